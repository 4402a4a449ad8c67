"""The corrections engine's access to what is recorded: the store, the clock, the audit chain
and the watchers told of each change. Every other collaborator of the engine reads and writes
corrections through one :class:`Records`, so a correction is looked up, audited and published
the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Callable

from backstop.controller.corrections.watching import Watchers
from backstop.controller.store.base import Store
from backstop.core.errors import NotFound
from backstop.core.models import Correction, CorrectionSpec
from backstop.wire import correction_convert


class Records:
    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock
        self.watchers = Watchers(self.get)
        self.publish = self.watchers.publish

    def audit(self, actor: str, event: str, subject: str, **details: object) -> None:
        """Append to the audit chain; called before the decision takes effect."""
        self.store.append_audit(
            ts=self.clock(), actor=actor, action=event, subject=subject, details=details
        )

    def get(self, correction_id: str) -> Correction:
        found = self.store.get_correction(correction_id)
        if found is None:
            raise NotFound(f"no correction {correction_id!r}; see `backstop corrections`")
        return found


def spec_details(spec: CorrectionSpec) -> dict[str, object]:
    """What the audit entry of a correction's creation records of its spec."""
    scope = correction_convert.scope_to_pb(spec.scope).SerializeToString(deterministic=True)
    return {
        "action": spec.action.value,
        "scope": scope.hex(),
        "reason": spec.reason,
        "issuer": spec.issuer,
    }
