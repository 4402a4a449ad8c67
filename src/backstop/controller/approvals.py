"""Which approvals the controller accepts (``ApproveCorrection``).

An approval is an approver's own Ed25519 signature over the exact spec bytes of a correction
waiting for its quorum (``proposed``), by someone other than its issuer, once per person, before
the correction expires. For a resume, the correction it undoes must still be in force, and the
quorum counted is the one for undoing that correction's action (``admission``), so approving a
resume of a shutdown takes as many approvers as the shutdown did.
"""

from __future__ import annotations

from backstop.controller.admission import Lookup, check_in_force
from backstop.controller.settling import rfc3339
from backstop.core.errors import Conflict, NotFound, PermissionDenied
from backstop.core.models import Correction, CorrectionState, SignatureRecord
from backstop.security import quorum
from backstop.security.identities import TrustPolicy


def check(
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
