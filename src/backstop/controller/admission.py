"""Which corrections the controller admits: undo is as guarded as do.

- ``reverts`` is allowed on a resume only, and a resume must carry it: an observe (or anything
  else) naming a correction it "reverts" is refused, so nothing but a completed resume can mark
  a correction reverted.
- A resume is admitted only for a correction in force: revertible (not a terminate), not itself
  a resume, not reverted, and not one that never acted (proposed, or failed or expired with
  nothing applied anywhere). It must keep that correction's scope exactly.
- A resume needs the quorum for undoing the action it undoes (trust policy ``resume_quorum``,
  by default that action's own quorum): a shutdown two approvers allowed is not lifted by one
  operator alone. :func:`check_new` returns the correction undone, whose action is the
  ``reverts_action`` of ``quorum.check``.
- A correction id is admitted once: a replayed request is refused (and audited as such).

Each check raises a :class:`~backstop.core.errors.BackstopError` whose message says why; the
engine audits it as ``correction.refused`` before answering.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from backstop.controller.settling import acted_on
from backstop.controller.store.base import NodeRecord
from backstop.core.errors import Conflict, InvalidInput, NotFound
from backstop.core.models import Action, Correction, CorrectionSpec, CorrectionState
from backstop.core.scope import node_in_scope

Lookup = Callable[[str], Correction | None]


def check_new(spec: CorrectionSpec, lookup: Lookup) -> Correction | None:
    """Refuse a spec the rules above do not admit; for a resume, the correction it undoes."""
    if lookup(spec.correction_id) is not None:
        raise Conflict(f"a correction {spec.correction_id} exists already (a replayed request?)")
    if spec.action is not Action.RESUME:
        if spec.reverts:
            raise InvalidInput(
                f"only a resume may name a correction it reverts; this is a {spec.action.value}"
            )
        return None
    if not spec.reverts:
        raise InvalidInput("a resume must name the correction it reverts")
    original = lookup(spec.reverts)
    if original is None:
        raise NotFound(f"no correction {spec.reverts!r} to resume; see `backstop corrections`")
    check_in_force(original)
    if spec.scope != original.spec.scope:
        raise InvalidInput("a resume must keep the scope of the correction it reverts")
    return original


def check_in_force(original: Correction) -> None:
    """Refuse to undo a correction that is not in force (see the module docstring)."""
    cid = original.spec.correction_id
    if original.spec.action is Action.RESUME or original.spec.reverts:
        raise Conflict(f"{cid} is itself a resume")
    if not original.spec.action.revertible:
        raise Conflict(f"{cid} is a {original.spec.action.value}; it cannot be undone by resume")
    state = original.state
    if state is CorrectionState.REVERTED:
        raise Conflict(f"{cid} was already reverted")
    if state in (CorrectionState.PROPOSED, CorrectionState.APPROVED):
        raise Conflict(f"{cid} is not in force: it is {state.value} and was never sent")
    if state in (CorrectionState.FAILED, CorrectionState.EXPIRED) and not acted_on(original):
        raise Conflict(f"{cid} is not in force: it {state.value} with nothing applied")


def targets(
    spec: CorrectionSpec, original: Correction | None, known: Mapping[str, NodeRecord]
) -> list[str]:
    """A resume goes where the correction it undoes went; others to the known nodes in scope."""
    if original is not None:
        return [t.node_id for t in original.targets]
    return sorted(n for n in known if node_in_scope(spec.scope, n))
