"""Corrections a policy starts, and the release of those its blast-radius limit held.

A policy's correction has no person's signature over its spec: its authority is the policy
version (the spec's ``policy_digest``), which every command carries to the agents
(:mod:`backstop.controller.policy_authorities`) and which each agent checks itself
(:mod:`backstop.agent.policy_authority`). Its id is derived from the policy version, the node,
the workload and the week, so a second report of the same workload, a second replica or a
restarted controller finds it already started instead of starting it twice.

Past the policy's limit (``max_targets_per_hour``) a correction is stored ``proposed`` and
waits for a person: one approval (an approver's signature in a secure controller; anyone in
open mode) releases it to its targets.
"""

from __future__ import annotations

import hashlib
import logging

from backstop.controller import metrics
from backstop.controller.authz import Authorizer, Caller
from backstop.controller.corrections import rules
from backstop.controller.corrections.delivery import Delivery
from backstop.controller.corrections.records import Records, spec_details
from backstop.core.errors import BackstopError, Conflict
from backstop.core.models import Correction, CorrectionSpec, CorrectionState, SignatureRecord
from backstop.security.command_check import MAX_TTL_S
from backstop.security.identities import Role
from backstop.telemetry.logs import correction_fields
from backstop.wire import correction_convert

log = logging.getLogger(__name__)


def policy_correction_id(digest: str, node_id: str, workload_id: str, now_s: float) -> str:
    """The id of the correction a policy version starts on one workload in this week."""
    week = int(now_s // MAX_TTL_S)
    key = f"{digest}\n{node_id}\n{workload_id}\n{week}".encode()
    return "cor-" + hashlib.sha256(key).hexdigest()[:24]


class PolicyStarts:
    def __init__(self, records: Records, authz: Authorizer, delivery: Delivery) -> None:
        self._records = records
        self._store = records.store
        self._clock = records.clock
        self._authz = authz
        self._delivery = delivery

    def start(self, spec: CorrectionSpec, *, held: str = "") -> Correction | None:
        """Store and dispatch ``spec`` (``held``: why it waits for a person instead);
        ``None`` when it was started already."""
        cid = spec.correction_id
        if self._store.get_correction(cid) is not None:
            return None
        state = CorrectionState.PROPOSED if held else CorrectionState.APPROVED
        self._records.audit(
            spec.issuer,
            "correction.propose" if held else "correction.create",
            cid,
            **spec_details(spec),
            policy_digest=spec.policy_digest,
            incident=spec.incident,
            **({"held": held} if held else {}),
        )
        try:
            self._store.create_correction(
                spec,
                state,
                self._clock(),
                spec_bytes=correction_convert.spec_bytes(spec),
                signatures=(),
                approvals_required=1 if held else 0,
            )
        except Conflict:
            return None  # another replica started it meanwhile
        metrics.CORRECTIONS.labels(action=spec.action.value).inc()
        log.warning(
            "policy started a correction",
            extra=correction_fields(spec, "admitted", state=state.value, detail=held),
        )
        if held:
            self._store.set_correction_state(cid, state, held, self._clock())
            return self._records.get(cid)
        return self._dispatch(spec)

    def release(
        self, correction: Correction, signature: SignatureRecord | None, caller: Caller
    ) -> Correction:
        """A person lets a held policy correction go to its targets."""
        cid = correction.spec.correction_id
        trust = self._authz.policy()
        try:
            if trust is None:
                if correction.state is not CorrectionState.PROPOSED:
                    raise Conflict(f"{cid} is {correction.state.value}, not waiting for approval")
            else:
                self._authz.require(caller, Role.APPROVER, "approving")
                signature, _ = rules.check_approval(
                    correction,
                    signature,
                    caller.name,
                    policy=trust,
                    spec_bytes=self._store.spec_bytes(cid),
                    lookup=self._store.get_correction,
                    now_s=self._clock(),
                )
        except BackstopError as exc:
            self._records.audit(caller.name, "approval.refused", cid, reason=exc.message)
            raise
        self._records.audit(
            caller.name,
            "correction.approve",
            cid,
            key_id=signature.key_id if signature is not None else "",
            released="held by its policy's blast-radius limit",
        )
        if signature is not None:
            self._store.add_signature(cid, signature)
        self._store.set_correction_state(
            cid, CorrectionState.APPROVED, f"released by {caller.name}", self._clock()
        )
        return self._dispatch(correction.spec)

    def _dispatch(self, spec: CorrectionSpec) -> Correction:
        known = {r.info.node_id: r for r in self._store.list_nodes()}
        return self._delivery.dispatch(spec, rules.targets(spec, None, known), known)
