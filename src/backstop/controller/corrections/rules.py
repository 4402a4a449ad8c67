"""Which corrections and approvals the controller admits: undo is as guarded as do.

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

An approval (``ApproveCorrection``, :func:`check_approval`) is an approver's own Ed25519
signature over the exact spec bytes of a correction waiting for its quorum (``proposed``), by
someone other than its issuer, once per person, before the correction expires. For a resume,
the correction it undoes must still be in force, and the quorum counted is the one for undoing
that correction's action, so approving a resume of a shutdown takes as many approvers as the
shutdown did.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from backstop.controller.corrections.settling import acted_on
from backstop.controller.store.base import NodeRecord
from backstop.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from backstop.core.models import (
    Action,
    Correction,
    CorrectionSpec,
    CorrectionState,
    SignatureRecord,
)
from backstop.core.scope import node_in_scope
from backstop.core.times import rfc3339
from backstop.security import quorum
from backstop.security.identities import TrustPolicy

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


def check_approval(
    correction: Correction,
    signature: SignatureRecord | None,
    approver: str,
    *,
    policy: TrustPolicy,
    spec_bytes: bytes,
    lookup: Lookup,
    now_s: float,
) -> tuple[SignatureRecord, Correction | None]:
    """Raise for an approval the rules refuse; else the signature and, for a resume, the
    correction it undoes."""
    cid = correction.spec.correction_id
    if correction.state is not CorrectionState.PROPOSED:
        raise Conflict(f"{cid} is {correction.state.value}, not waiting for approval")
    if signature is None:
        raise PermissionDenied("an approval must be signed (--key)")
    if signature.signer != approver or signature.role != "approver":
        raise PermissionDenied(f"{approver} can only add their own approver signature")
    if approver == correction.spec.issuer:
        raise PermissionDenied(f"{approver} issued {cid} and cannot approve it")
    if approver in correction.approvers:
        raise Conflict(f"{approver} already approved {cid}")
    if correction.spec.expires_at_s <= now_s:
        raise Conflict(f"{cid} expired at {rfc3339(correction.spec.expires_at_s)}")
    original = None
    if correction.spec.reverts:  # a resume: what it undoes must still be in force
        original = lookup(correction.spec.reverts)
        if original is None:
            raise NotFound(f"no correction {correction.spec.reverts!r} to resume")
        check_in_force(original)
    problem = quorum.signature_problem(spec_bytes, signature, policy)
    if problem:
        raise PermissionDenied(problem)
    return signature, original
