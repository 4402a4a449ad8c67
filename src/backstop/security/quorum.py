"""Whether a correction carries the signatures it needs: a valid issuer and enough approvers.

Signatures (``backstop.core.models.SignatureRecord``) are Ed25519 over the correction's
canonical bytes, the serialized ``CorrectionSpec``. The rules, checked against a
:class:`~backstop.security.identities.TrustPolicy`:

- every signature's key must be in the policy, must verify over the exact bytes, and must name
  the key's owner as its signer; any violation rejects the correction outright;
- the correction's issuer, and only the issuer, signs with role ``issuer``, and the issuer has
  role operator or above;
- ``approver`` signatures count once per person, only from people with role approver or
  above who are not the issuer;
- the correction may act when the issuer signed and the distinct approvers reach the quorum
  the policy sets for its action; for a resume, the quorum for undoing the action of the
  correction it reverts (``reverts_action``), so undo is as guarded as do.

Every outcome carries a reason a person can act on. Pure functions; no I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from backstop.core.errors import InvalidInput
from backstop.core.models import SignatureRecord
from backstop.security.identities import Person, Role, TrustPolicy
from backstop.security.keys import OperatorKey, verify

MAX_SIGNATURES = 64
"""More signatures than this on one correction is malformed input (and a cheap DoS)."""


class SignatureRole(enum.StrEnum):
    """In which capacity a person signed a correction (``SignatureRecord.role``)."""

    ISSUER = "issuer"
    APPROVER = "approver"

    @classmethod
    def parse(cls, text: str) -> SignatureRole:
        """The role named ``text``; ``InvalidInput`` for anything else."""
        try:
            return cls(text)
        except ValueError as exc:
            raise InvalidInput(
                f"unknown signature role {text!r} (expected 'issuer' or 'approver')",
            ) from exc


def sign_correction(
    key: OperatorKey,
    spec_bytes: bytes,
    *,
    signer: str,
    role: SignatureRole | str,
    signed_at_s: float,
) -> SignatureRecord:
    """Sign ``spec_bytes`` with ``key`` as ``signer`` in the given capacity."""
    return SignatureRecord(
        key_id=key.key_id,
        signer=signer,
        role=SignatureRole.parse(role).value,
        signature=key.sign(spec_bytes),
        signed_at_s=signed_at_s,
    )


@dataclass(frozen=True)
class Verdict:
    """The outcome of :func:`check`."""

    ok: bool
    """The correction may act: issuer signature valid and quorum reached."""
    reason: str
    issuer_ok: bool
    """The issuer signed validly and may issue corrections."""
    approvers: tuple[str, ...]
    """Distinct people whose approvals count, in the order they appear."""
    required: int
    """Approvals the policy requires for this action."""

    @property
    def progress(self) -> str:
        """E.g. ``"1 of 2 approvals"``."""
        return f"{len(self.approvers)} of {self.required} approvals"


@dataclass(frozen=True)
class ApprovalState:
    """Where a correction stands on its way to quorum, for status displays."""

    verdict: Verdict
    missing: int
    """Approvals still needed (0 once the quorum is reached)."""
    candidates: tuple[str, ...]
    """People who could still approve: approver or admin, not the issuer, not yet counted."""

    def describe(self) -> str:
        """E.g. ``"1 of 2 approvals (bob); waiting for 1 more from carol, dave"``."""
        verdict = self.verdict
        text = verdict.progress
        if verdict.approvers:
            text += f" ({', '.join(verdict.approvers)})"
        if self.missing:
            who = ", ".join(self.candidates) if self.candidates else "nobody (no approver left)"
            text += f"; waiting for {self.missing} more from {who}"
        if not verdict.issuer_ok:
            text += f"; {verdict.reason}"
        return text


def signature_problem(spec_bytes: bytes, record: SignatureRecord, policy: TrustPolicy) -> str:
    """Why ``record`` is not a valid signature of ``spec_bytes`` by its signer ('' if it is)."""
    return _signed_by(spec_bytes, record, policy)[1]


def check(
    spec_bytes: bytes,
    *,
    issuer: str,
    action: str,
    signatures: Sequence[SignatureRecord],
    policy: TrustPolicy,
    reverts_action: str = "",
) -> Verdict:
    """Decide whether the signatures on a correction let it act (see the module docstring).

    ``reverts_action`` is, for a resume, the action of the correction it undoes; it picks the
    quorum (:meth:`TrustPolicy.required_resume_approvals`).
    """
    required = required_approvals(policy, action, reverts_action)
    if len(signatures) > MAX_SIGNATURES:
        return Verdict(
            ok=False,
            reason=f"too many signatures ({len(signatures)}; at most {MAX_SIGNATURES})",
            issuer_ok=False,
            approvers=(),
            required=required,
        )
    valid: list[tuple[SignatureRecord, Person]] = []
    rejection = ""
    for record in signatures:
        owner, problem = _signed_by(spec_bytes, record, policy)
        if owner is not None:
            if record.role == SignatureRole.ISSUER and owner.name != issuer:
                problem = f"issuer signature by {owner.name}, but the issuer is {issuer}"
            else:
                valid.append((record, owner))
        rejection = rejection or problem

    issuer_problem = _issuer_problem(issuer, valid, policy)
    approvers, notes = _count_approvers(issuer, valid)
    issuer_ok = not issuer_problem

    if rejection:
        reason = rejection
    elif issuer_problem:
        reason = issuer_problem
    elif len(approvers) < required:
        reason = f"{action} needs {required} approvals from distinct approvers, has " + (
            f"{len(approvers)} ({', '.join(approvers)})" if approvers else "none"
        )
    elif required == 0:
        reason = f"issuer {issuer} signed; {action} needs no approval"
    else:
        reason = f"issuer {issuer} signed; {len(approvers)} of {required} approvals"
        reason += f" ({', '.join(approvers)})"
    if notes:
        reason += "; " + "; ".join(notes)
    ok = not rejection and issuer_ok and len(approvers) >= required
    return Verdict(
        ok=ok,
        reason=reason,
        issuer_ok=issuer_ok,
        approvers=approvers,
        required=required,
    )


def required_approvals(policy: TrustPolicy, action: str, reverts_action: str = "") -> int:
    """Approvals a correction of ``action`` needs (for a resume: to undo ``reverts_action``)."""
    if str(action) == "resume" and reverts_action:
        return policy.required_resume_approvals(reverts_action)
    return policy.required_approvals(action)


def approval_state(
    spec_bytes: bytes,
    *,
    issuer: str,
    action: str,
    signatures: Sequence[SignatureRecord],
    policy: TrustPolicy,
    reverts_action: str = "",
) -> ApprovalState:
    """How far a correction is from its quorum, and who could still approve it."""
    verdict = check(
        spec_bytes,
        issuer=issuer,
        action=action,
        signatures=signatures,
        policy=policy,
        reverts_action=reverts_action,
    )
    candidates = tuple(
        p.name
        for p in policy.approvers()
        if p.name != issuer and p.name not in verdict.approvers and p.key_ids
    )
    return ApprovalState(
        verdict=verdict,
        missing=max(0, verdict.required - len(verdict.approvers)),
        candidates=candidates,
    )


def approval_problem(
    spec_bytes: bytes,
    *,
    issuer: str,
    signature: SignatureRecord,
    existing: Sequence[SignatureRecord],
    policy: TrustPolicy,
) -> str:
    """Why a new approval would not count ('' if it would); for refusing it at the door."""
    if signature.role != SignatureRole.APPROVER:
        return f"an approval must have role 'approver', not {str(signature.role)!r}"
    owner, problem = _signed_by(spec_bytes, signature, policy)
    if owner is None:
        return problem
    if owner.name == issuer:
        return f"issuer {issuer} cannot approve their own correction"
    if not owner.role.at_least(Role.APPROVER):
        return f"{owner.name} is a {owner.role} and may not approve"
    if any(
        s.role == SignatureRole.APPROVER
        and s.signer == owner.name
        and not _bad(spec_bytes, s, policy)
        for s in existing
    ):
        return f"{owner.name} already approved"
    return ""


def _signed_by(
    spec_bytes: bytes, record: SignatureRecord, policy: TrustPolicy
) -> tuple[Person | None, str]:
    """The signer of a valid signature and '', or ``None`` and why it is not valid."""
    owner = policy.owner_of(record.key_id)
    public = policy.public_key(record.key_id)
    if owner is None or public is None:
        return None, f"unknown key {record.key_id}"
    if not verify(public, spec_bytes, record.signature):
        return None, f"forged or corrupted signature by key {record.key_id} ({owner.name})"
    if record.signer != owner.name:
        return None, (
            f"signature by key {record.key_id} names signer {record.signer!r}, "
            f"but the key belongs to {owner.name}"
        )
    if record.role not in (SignatureRole.ISSUER, SignatureRole.APPROVER):
        return None, f"signature by {owner.name} has unknown role {record.role!r}"
    return owner, ""


def _bad(spec_bytes: bytes, record: SignatureRecord, policy: TrustPolicy) -> bool:
    return bool(signature_problem(spec_bytes, record, policy))


def _issuer_problem(
    issuer: str,
    valid: Sequence[tuple[SignatureRecord, Person]],
    policy: TrustPolicy,
) -> str:
    person = policy.person(issuer)
    if person is None:
        return f"issuer {issuer} is not in the trust policy"
    if not person.role.at_least(Role.OPERATOR):
        return f"issuer {issuer} is a {person.role}; issuing needs operator or above"
    if not any(r.role == SignatureRole.ISSUER and p.name == issuer for r, p in valid):
        return f"no issuer signature by {issuer}"
    return ""


def _count_approvers(
    issuer: str,
    valid: Sequence[tuple[SignatureRecord, Person]],
) -> tuple[tuple[str, ...], list[str]]:
    counted: list[str] = []
    notes: list[str] = []
    for record, person in valid:
        if record.role != SignatureRole.APPROVER:
            continue
        if person.name == issuer:
            note = f"issuer {issuer} cannot approve their own correction (not counted)"
        elif not person.role.at_least(Role.APPROVER):
            note = f"{person.name} is a {person.role} and may not approve (not counted)"
        elif person.name in counted:
            note = f"{person.name} approved twice (counted once)"
        else:
            counted.append(person.name)
            continue
        if note not in notes:
            notes.append(note)
    return tuple(counted), notes
