"""What the corrections engine keeps in memory about corrections being delivered.

Per correction: each target's state (so an ack costs O(1), not a reload of every target), its
expiry, and when its stored summary was last refreshed; per (correction, node): when the command
was sent, for the ack deadline. The store stays the record: anything missing here (after a
restart, or dropped because another replica changed it) is loaded again on first use.
"""

from __future__ import annotations

from collections.abc import Iterable

from backstop.controller.store.base import Store
from backstop.core.errors import NotFound
from backstop.core.models import Correction, TargetState

SUMMARY_INTERVAL_S = 0.25


class Progress:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._states: dict[str, dict[str, TargetState]] = {}
        self._expires: dict[str, float] = {}
        self._summarised: dict[str, float] = {}
        self._stale: set[str] = set()
        self._sent_at: dict[tuple[str, str], float] = {}

    def states(self, correction_id: str) -> dict[str, TargetState]:
        """Per-node target states of a correction (loaded once, then kept up to date)."""
        states = self._states.get(correction_id)
        if states is None:
            states = self._states[correction_id] = self._store.target_states(correction_id)
        return states

    def start(
        self, correction_id: str, states: dict[str, TargetState], expires_at_s: float
    ) -> None:
        self._states[correction_id] = states
        self._expires[correction_id] = expires_at_s

    def expiry(self, correction_id: str) -> float:
        expires = self._expires.get(correction_id)
        if expires is None:
            found = self._store.get_correction(correction_id)
            if found is None:
                raise NotFound(f"no correction {correction_id!r}")
            expires = self._expires[correction_id] = found.spec.expires_at_s
        return expires

    def summary_due(self, correction_id: str, now: float, force: bool) -> bool:
        """Whether to store a fresh summary (at most every ``SUMMARY_INTERVAL_S``); one not
        stored now is stale until :meth:`take_stale` hands it out."""
        if force or now - self._summarised.get(correction_id, 0.0) >= SUMMARY_INTERVAL_S:
            self._summarised[correction_id] = now
            self._stale.discard(correction_id)
            return True
        self._stale.add(correction_id)
        return False

    def take_stale(self) -> list[str]:
        """Corrections whose stored summary lags what is known (to store it now)."""
        stale, self._stale = sorted(self._stale), set()
        return stale

    def reload(self, correction_id: str) -> None:
        """Read the target states from the store next time (another replica changed them)."""
        self._states.pop(correction_id, None)

    def forget(self, correction_id: str) -> None:
        """The correction reached a final state."""
        self._states.pop(correction_id, None)
        self._expires.pop(correction_id, None)
        self._summarised.pop(correction_id, None)
        self._stale.discard(correction_id)

    # --- ack deadlines -------------------------------------------------------------------

    def sent(self, correction_id: str, node_id: str, now: float) -> None:
        self._sent_at[(correction_id, node_id)] = now

    def answered(self, correction_id: str, node_id: str) -> float | None:
        """Stop the node's ack clock; when the command was sent, if it was running."""
        return self._sent_at.pop((correction_id, node_id), None)

    def overdue(self, now: float, timeout_s: float) -> list[tuple[str, str]]:
        """(correction, node) pairs sent more than ``timeout_s`` ago; their clocks stop."""
        late = [key for key, sent in self._sent_at.items() if now - sent > timeout_s]
        for key in late:
            del self._sent_at[key]
        return late

    def recover(self, corrections: Iterable[Correction], now: float) -> None:
        """After a restart: restart the ack clock of every dispatched target."""
        for correction in corrections:
            for target in correction.targets:
                if target.state is TargetState.DISPATCHED:
                    self.sent(correction.spec.correction_id, target.node_id, now)
