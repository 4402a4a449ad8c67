"""Admitting corrections: create (unsigned, open mode only), create signed, approve and
resume. Each request is checked (id, clock, expiry, scope, issuer, the rules of ``rules``,
the trust policy's quorum), audited (refusals too), stored, and handed to ``delivery`` once
approved. This is the one place a correction's expiry is set.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from backstop.controller import metrics
from backstop.controller.authz import Authorizer, Caller
from backstop.controller.corrections import rules
from backstop.controller.corrections.delivery import Delivery
from backstop.controller.corrections.records import Records, spec_details
from backstop.controller.incident_book import require_open
from backstop.core.errors import BackstopError, Conflict, InvalidInput, NotFound, PermissionDenied
from backstop.core.models import (
    Action,
    ActionParams,
    Correction,
    CorrectionSpec,
    CorrectionState,
    Scope,
    SignatureRecord,
)
from backstop.core.scope import validate_scope
from backstop.core.settings import ControllerSettings
from backstop.core.specs import new_spec
from backstop.core.text import validate_reason
from backstop.security import quorum
from backstop.security.command_check import MAX_CLOCK_SKEW_S, MAX_TTL_S
from backstop.security.identities import Role
from backstop.telemetry.logs import correction_fields
from backstop.wire import correction_convert
from backstop.wire.correction_convert import validate_params

log = logging.getLogger(__name__)

_ID = re.compile(r"^cor-[0-9a-f]{8,40}$")


@dataclass(frozen=True, slots=True)
class CreateRequest:
    action: Action
    scope: Scope
    reason: str
    issuer: str
    ttl_s: float = 0.0
    params: ActionParams = field(default_factory=ActionParams)
    incident: str = ""


class Admission:
    def __init__(
        self,
        records: Records,
        settings: ControllerSettings,
        authz: Authorizer,
        delivery: Delivery,
    ) -> None:
        self._records = records
        self._store = records.store
        self._clock = records.clock
        self._settings = settings
        self._authz = authz
        self._delivery = delivery

    def create(self, request: CreateRequest, caller: Caller | None = None) -> Correction:
        """An unsigned correction: only in open mode (no trust policy)."""
        caller = caller or Caller(request.issuer or "anonymous", Role.ADMIN, authenticated=False)
        if self._authz.secure:
            self._refuse(caller, "correction.refused", "-", "corrections must be signed (--key)")
        if request.action is Action.RESUME:
            raise InvalidInput("use resume ID to undo a correction")
        now = self._clock()
        ttl = request.ttl_s if request.ttl_s > 0 else self._settings.default_ttl_s
        spec = new_spec(
            request.action,
            request.scope,
            request.reason.strip(),
            request.issuer,
            now_s=now,
            ttl_s=ttl,
            params=request.params,
            incident=request.incident,
        )
        return self._admit(spec, correction_convert.spec_bytes(spec), (), caller)

    def create_signed(
        self, data: bytes, signatures: tuple[SignatureRecord, ...], caller: Caller
    ) -> Correction:
        """A correction built and signed by its issuer; these exact bytes are what agents get.
        A resume among them (``reverts`` set) is checked by ``rules``."""
        return self._admit(correction_convert.spec_from_bytes(data), data, signatures, caller)

    def _check_spec(self, spec: CorrectionSpec, caller: Caller) -> None:
        now = self._clock()
        if not _ID.match(spec.correction_id):
            raise InvalidInput(f"malformed correction id {spec.correction_id!r}")
        if abs(spec.created_at_s - now) > MAX_CLOCK_SKEW_S:
            raise InvalidInput(
                f"created_at is {spec.created_at_s - now:+.0f} s from the controller's clock; "
                f"check the clock (at most {MAX_CLOCK_SKEW_S:g} s skew)"
            )
        if spec.expires_at_s <= now:
            raise InvalidInput("the correction has already expired")
        if spec.expires_at_s - spec.created_at_s > MAX_TTL_S:
            raise InvalidInput(f"expiry is more than {MAX_TTL_S / 86400:g} days away")
        validate_scope(spec.scope)
        validate_params(spec.params)
        validate_reason(spec.reason)
        if not spec.issuer:
            raise InvalidInput("the issuer is missing")
        if caller.authenticated and spec.issuer != caller.name:
            raise PermissionDenied(f"{caller.name} cannot issue a correction as {spec.issuer}")

    def _admit(
        self,
        spec: CorrectionSpec,
        data: bytes,
        signatures: tuple[SignatureRecord, ...],
        caller: Caller,
    ) -> Correction:
        """Validate, decide (approved or waiting for a quorum), audit, store, dispatch."""
        try:
            self._check_spec(spec, caller)
            self._authz.require(caller, Role.OPERATOR, f"a {spec.action.value}")
            original = rules.check_new(spec, self._store.get_correction)
            if spec.incident:
                require_open(self._store, spec.incident)
            known = {r.info.node_id: r for r in self._store.list_nodes()}
            unknown = [n for n in spec.scope.node_ids if n not in known]
            if unknown:
                raise NotFound(f"unknown node(s): {', '.join(unknown)}; see `backstop nodes`")
            undone = original.spec.action.value if original is not None else ""
            required, approvers = self._verify(spec, data, signatures, undone)
        except BackstopError as exc:
            self._refused(caller, spec, exc)
            raise
        waiting = len(approvers) < required
        state = CorrectionState.PROPOSED if waiting else CorrectionState.APPROVED
        self._records.audit(
            caller.name,
            "correction.propose" if waiting else "correction.create",
            spec.correction_id,
            **spec_details(spec),
            reverts=spec.reverts,
            incident=spec.incident,
            signers=[f"{s.signer}:{s.role}:{s.key_id}" for s in signatures],
            approvals=f"{len(approvers)} of {required}",
        )
        try:
            self._store.create_correction(
                spec,
                state,
                self._clock(),
                spec_bytes=data,
                signatures=signatures,
                approvals_required=required,
            )
        except BackstopError as exc:  # stored meanwhile through another replica
            self._refused(caller, spec, exc)
            raise
        metrics.CORRECTIONS.labels(action=spec.action.value).inc()
        log.info("correction created", extra=correction_fields(spec, "admitted", state=state.value))
        if waiting:
            self._store.set_correction_state(
                spec.correction_id,
                state,
                f"waiting for approvals: {len(approvers)} of {required}",
                self._clock(),
            )
            return self._records.get(spec.correction_id)
        return self._delivery.dispatch(spec, rules.targets(spec, original, known), known)

    def _refused(self, caller: Caller, spec: CorrectionSpec, exc: BackstopError) -> None:
        log.warning(
            "correction refused", extra=correction_fields(spec, "refused", detail=exc.message)
        )
        self._records.audit(
            caller.name,
            "correction.refused",
            spec.correction_id,
            action=spec.action.value,
            reverts=spec.reverts,
            reason=exc.message,
        )

    def _verify(
        self,
        spec: CorrectionSpec,
        data: bytes,
        signatures: tuple[SignatureRecord, ...],
        undone: str,
    ) -> tuple[int, tuple[str, ...]]:
        """Approvals required and counted; PermissionDenied when the signatures do not hold.
        ``undone``: for a resume, the action it undoes (its quorum applies)."""
        policy = self._authz.policy()
        if policy is None:
            return 0, ()
        verdict = quorum.check(
            data,
            issuer=spec.issuer,
            action=spec.action.value,
            signatures=signatures,
            policy=policy,
            reverts_action=undone,
        )
        if not verdict.issuer_ok or (not verdict.ok and "signature" in verdict.reason):
            raise PermissionDenied(verdict.reason)
        return verdict.required, verdict.approvers

    def approve(
        self, correction_id: str, signature: SignatureRecord | None, caller: Caller
    ) -> Correction:
        correction = self._records.get(correction_id)
        policy = self._authz.policy()
        try:
            if policy is None:
                raise Conflict(
                    f"{correction_id} needs no approval: this controller has no trust policy"
                )
            self._authz.require(caller, Role.APPROVER, "approving")
            data = self._store.spec_bytes(correction_id)
            signature, original = rules.check_approval(
                correction,
                signature,
                caller.name,
                policy=policy,
                spec_bytes=data,
                lookup=self._store.get_correction,
                now_s=self._clock(),
            )
        except BackstopError as exc:
            self._records.audit(caller.name, "approval.refused", correction_id, reason=exc.message)
            raise
        signatures = (*correction.signatures, signature)
        verdict = quorum.check(
            data,
            issuer=correction.spec.issuer,
            action=correction.spec.action.value,
            signatures=signatures,
            policy=policy,
            reverts_action=original.spec.action.value if original is not None else "",
        )
        self._records.audit(
            caller.name,
            "correction.approve",
            correction_id,
            key_id=signature.key_id,
            approvals=f"{len(verdict.approvers)} of {verdict.required}",
        )
        self._store.add_signature(correction_id, signature)
        if not verdict.ok:
            self._store.set_correction_state(
                correction_id,
                CorrectionState.PROPOSED,
                f"waiting for approvals: {verdict.progress}",
                self._clock(),
            )
            self._records.publish(correction_id)
            return self._records.get(correction_id)
        self._store.set_correction_state(
            correction_id, CorrectionState.APPROVED, f"approved: {verdict.progress}", self._clock()
        )
        known = {r.info.node_id: r for r in self._store.list_nodes()}
        return self._delivery.dispatch(
            correction.spec, rules.targets(correction.spec, original, known), known
        )

    def _refuse(self, caller: Caller, action: str, subject: str, reason: str) -> None:
        self._records.audit(caller.name, action, subject, reason=reason)
        raise PermissionDenied(reason)

    def resume(
        self,
        correction_id: str,
        reason: str,
        issuer: str,
        caller: Caller | None = None,
        incident: str = "",
    ) -> Correction:
        """An unsigned resume: only in open mode."""
        caller = caller or Caller(issuer or "anonymous", Role.ADMIN, authenticated=False)
        if self._authz.secure:
            self._refuse(
                caller, "correction.refused", correction_id, "a resume must be signed (--key)"
            )
        original = self._records.get(correction_id)
        now = self._clock()
        spec = new_spec(
            Action.RESUME,
            original.spec.scope,
            reason.strip() or f"resume {correction_id}",
            issuer,
            now_s=now,
            ttl_s=self._settings.default_ttl_s,
            reverts=correction_id,
            incident=incident,
        )
        return self._admit(spec, correction_convert.spec_bytes(spec), (), caller)
