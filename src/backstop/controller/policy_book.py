"""Admitting policy changes: apply, approve and delete, each audited before it is stored.

A policy is kept as versions (:mod:`backstop.core.policies`). Applying a file parses it
(:func:`backstop.policy.document.parse_policy`: a bad file is refused with its line and
reason, and nothing changes), then decides the new version's state the way a correction's
is decided, over the file's exact bytes:

- in open mode (no trust policy) every change is active at once;
- with a trust policy the caller needs the operator role and must sign the bytes as issuer;
  the approvals needed are the quorum of the policy's action (what issuing that action by
  hand needs), and when the change replaces or deletes a version whose action corrects, at
  least the quorum of undoing that action (a resume of it): the two-person rule holds for
  undo as well as do. Until the approvals (``backstop policy approve``) reach it, the
  version is ``proposed`` and the active one stays in force.

A deletion signs a statement naming the policy and the digest of the version it ends, so an
approval of one deletion cannot be replayed against a later version.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from backstop.controller.authz import Authorizer, Caller
from backstop.controller.store.base import Store
from backstop.core.errors import BackstopError, Conflict, NotFound, PermissionDenied
from backstop.core.models import SignatureRecord
from backstop.core.policies import (
    DELETE,
    PolicyState,
    PolicyVersion,
    deletion_statement,
    digest_of,
)
from backstop.policy.document import PolicyDocument, parse_policy
from backstop.security import quorum
from backstop.security.identities import Role, TrustPolicy

Audit = Callable[..., None]
"""``audit(actor, event, subject, **details)``: append to the audit chain."""

RESUME = "resume"


class PolicyBook:
    def __init__(
        self,
        store: Store,
        authz: Authorizer,
        audit: Audit,
        clock: Callable[[], float] = time.time,
        *,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._on_change = on_change
        """Told after a version became active (evaluation reloads the policies in force)."""
        self._store = store
        self._authz = authz
        self._audit = audit
        self._clock = clock

    # -- reading ---------------------------------------------------------------------------

    def versions(self, name: str = "", include_ended: bool = False) -> list[PolicyVersion]:
        """Versions in force or waiting (every version with ``include_ended``), each with
        where it stands on its quorum."""
        states = () if include_ended else (PolicyState.ACTIVE, PolicyState.PROPOSED)
        found = self._store.list_policy_versions(name, states)
        if name and not found and not self._store.list_policy_versions(name):
            raise NotFound(f"no policy {name!r}; see `backstop policy list`")
        return [self._with_approval(v) for v in found]

    def active(self, name: str) -> PolicyVersion | None:
        """The version of ``name`` in force (``None``: none, or it was deleted)."""
        found = self._store.list_policy_versions(name, (PolicyState.ACTIVE,))
        return found[0] if found and not found[0].deletes else None

    def in_force(self) -> list[PolicyDocument]:
        """Every active policy, parsed (for evaluation)."""
        return [
            parse_policy(v.document, f"policy {v.name} v{v.version}")
            for v in self._store.list_policy_versions(states=(PolicyState.ACTIVE,))
            if not v.deletes
        ]

    # -- changing --------------------------------------------------------------------------

    def apply(
        self, document: bytes, signatures: Sequence[SignatureRecord], caller: Caller, source: str
    ) -> PolicyVersion:
        """A new version of the policy the file names (or the active one, unchanged)."""
        try:
            parsed = parse_policy(document, source or "policy")
        except BackstopError as exc:
            self._audit(caller.name, "policy.refused", source or "policy", reason=exc.message)
            raise
        name = parsed.policy.name
        current = self.active(name)
        if current is not None and current.digest == parsed.digest:
            return replace(current, approval="unchanged")
        action = parsed.policy.action.value
        return self._propose(name, document, action, signatures, caller, current=current)

    def delete(
        self, name: str, digest: str, signatures: Sequence[SignatureRecord], caller: Caller
    ) -> PolicyVersion:
        """A version that ends policy ``name`` (whose active version has ``digest``)."""
        current = self.active(name)
        if current is None:
            raise NotFound(f"no policy {name!r} is in force; see `backstop policy list`")
        if digest and digest != current.digest:
            raise Conflict(
                f"policy {name!r} changed: its active version {current.version} has digest "
                f"{current.digest[:16]}..., not {digest[:16]}...; look again and retry"
            )
        statement = deletion_statement(name, current.digest)
        return self._propose(name, statement, DELETE, signatures, caller, current=current)

    def approve(
        self, name: str, version: int, signature: SignatureRecord, caller: Caller
    ) -> PolicyVersion:
        subject = f"{name} v{version}"
        try:
            trust = self._approver_trust(caller)
            target = self._version(name, version)
            if target.state != PolicyState.PROPOSED:
                raise Conflict(f"policy {subject} is {target.state.value}, not proposed")
            problem = quorum.signature_problem(target.document, signature, trust)
            if problem:
                raise PermissionDenied(problem)
            if signature.signer != caller.name:
                raise PermissionDenied(
                    f"{caller.name} cannot approve with {signature.signer}'s key"
                )
            if any(s.key_id == signature.key_id for s in target.signatures):
                raise Conflict(f"key {signature.key_id} already signed policy {subject}")
        except BackstopError as exc:
            self._audit(caller.name, "policy.approval_refused", subject, reason=exc.message)
            raise
        verdict = self._verdict(trust, target, (*target.signatures, signature))
        self._audit(
            caller.name,
            "policy.approve",
            subject,
            key_id=signature.key_id,
            digest=target.digest,
            approvals=f"{len(verdict.approvers)} of {verdict.required}",
        )
        self._store.add_policy_signature(name, version, signature)
        if verdict.ok:
            self._audit(caller.name, "policy.activate", subject, digest=target.digest)
            self._store.activate_policy_version(name, version, self._clock())
            self._on_change()
        return self._with_approval(self._version(name, version))

    # -- deciding --------------------------------------------------------------------------

    def _propose(
        self,
        name: str,
        document: bytes,
        action: str,
        signatures: Sequence[SignatureRecord],
        caller: Caller,
        *,
        current: PolicyVersion | None,
    ) -> PolicyVersion:
        event = "policy.delete" if action == DELETE else "policy.apply"
        draft = PolicyVersion(
            name=name,
            version=0,
            document=document,
            digest=digest_of(document),
            action=action,
            state=PolicyState.ACTIVE,
            applied_by=caller.name,
            applied_s=self._clock(),
            signatures=tuple(signatures),
        )
        try:
            trust = self._trust(caller, Role.OPERATOR, "changing a policy")
            if trust is not None:
                verdict = self._verdict(trust, draft, draft.signatures, current, caller.name)
                if not verdict.issuer_ok or (not verdict.ok and "signature" in verdict.reason):
                    raise PermissionDenied(verdict.reason)
                if not verdict.ok:
                    draft = replace(draft, state=PolicyState.PROPOSED)
        except BackstopError as exc:
            self._audit(caller.name, "policy.refused", name, change=event, reason=exc.message)
            raise
        self._audit(
            caller.name,
            event,
            name,
            digest=draft.digest,
            action=action,
            state=draft.state.value,
            replaces=current.version if current is not None else 0,
        )
        number = self._store.add_policy_version(draft)
        if draft.state == PolicyState.ACTIVE:
            self._on_change()
        return self._with_approval(self._version(name, number))

    def _trust(self, caller: Caller, role: Role, what: str) -> TrustPolicy | None:
        """The trust policy, once the caller has ``role`` (``None``: open mode)."""
        trust = self._authz.policy()
        if trust is not None:
            self._authz.require(caller, role, what)
        return trust

    def _approver_trust(self, caller: Caller) -> TrustPolicy:
        trust = self._trust(caller, Role.APPROVER, "approving a policy")
        if trust is None:
            raise Conflict("policies need no approval: this controller has no trust policy")
        return trust

    def _verdict(
        self,
        trust: TrustPolicy,
        version: PolicyVersion,
        signatures: Sequence[SignatureRecord],
        current: PolicyVersion | None = None,
        issuer: str = "",
    ) -> quorum.Verdict:
        """The quorum check of ``version``: its action's quorum, or undoing what it replaces
        when that needs more."""
        if current is None and version.version:
            current = self._replaced(version)
        action = RESUME if version.action == DELETE else version.action
        undone = current.action if current is not None else ""
        if (
            version.action != DELETE
            and undone
            and (
                quorum.required_approvals(trust, RESUME, undone)
                > quorum.required_approvals(trust, version.action)
            )
        ):
            action = RESUME
        return quorum.check(
            version.document,
            issuer=issuer or version.applied_by,
            action=action,
            signatures=signatures,
            policy=trust,
            reverts_action=undone if action == RESUME else "",
        )

    def _replaced(self, version: PolicyVersion) -> PolicyVersion | None:
        """The version in force when ``version`` was proposed (its predecessor if active)."""
        older = [
            v
            for v in self._store.list_policy_versions(version.name, (PolicyState.ACTIVE,))
            if v.version < version.version and not v.deletes
        ]
        return older[-1] if older else None

    def _version(self, name: str, version: int) -> PolicyVersion:
        for v in self._store.list_policy_versions(name):
            if v.version == version:
                return v
        raise NotFound(f"policy {name!r} has no version {version}; see `backstop policy list`")

    def _with_approval(self, version: PolicyVersion) -> PolicyVersion:
        trust = self._authz.policy()
        if trust is None:
            return version
        if version.state != PolicyState.PROPOSED:
            return replace(version, approval=f"{len(_approvers(version))} approvals")
        return replace(version, approval=self._verdict(trust, version, version.signatures).reason)


def _approvers(version: PolicyVersion) -> list[str]:
    return [s.signer for s in version.signatures if s.role == quorum.SignatureRole.APPROVER]
