"""Conversions of corrections between ``backstop.api.v1`` and ``backstop.core.models``: actions
and states, scopes, parameters, specs and their signed bytes, signatures, targets, outcomes,
corrections and command acks."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import TypeVar

from backstop.api.v1 import agent_pb2, types_pb2
from backstop.core.errors import InvalidInput
from backstop.core.models import (
    Action,
    ActionParams,
    CommandAck,
    Correction,
    CorrectionSpec,
    CorrectionState,
    PolicyAuthority,
    Scope,
    SignatureRecord,
    TargetResult,
    TargetState,
    WorkloadOutcome,
)
from backstop.core.specs import validate_params as validate_params  # noqa: PLC0414 (re-export)
from backstop.wire.checks import MAX_ID_LEN, counter, finite, ident, optf, set_present, text

_ACTION_TO_PB: dict[Action, types_pb2.Action] = {
    a: getattr(types_pb2, f"ACTION_{a.name}") for a in Action
}
_ACTION_FROM_PB: dict[int, Action] = {v: k for k, v in _ACTION_TO_PB.items()}
_CSTATE_TO_PB: dict[CorrectionState, types_pb2.CorrectionState] = {
    s: getattr(types_pb2, f"CORRECTION_STATE_{s.name}") for s in CorrectionState
}
_CSTATE_FROM_PB: dict[int, CorrectionState] = {v: k for k, v in _CSTATE_TO_PB.items()}
_TSTATE_TO_PB: dict[TargetState, types_pb2.TargetState] = {
    s: getattr(types_pb2, f"TARGET_STATE_{s.name}") for s in TargetState
}
_TSTATE_FROM_PB: dict[int, TargetState] = {v: k for k, v in _TSTATE_TO_PB.items()}

E = TypeVar("E", bound=enum.Enum)


# --- actions and states -------------------------------------------------------------------


def action_to_pb(action: Action) -> types_pb2.Action:
    return _ACTION_TO_PB[action]


def _known(table: Mapping[int, E], value: int, what: str) -> E:
    """The member a wire enum value stands for; InvalidInput for one this side does not know."""
    try:
        return table[value]
    except KeyError:
        raise InvalidInput(f"unknown {what} {value}") from None


def action_from_pb(value: int) -> Action:
    return _known(_ACTION_FROM_PB, value, "action")


def correction_state_from_pb(value: int) -> CorrectionState:
    return _known(_CSTATE_FROM_PB, value, "correction state")


def target_state_to_pb(state: TargetState) -> types_pb2.TargetState:
    return _TSTATE_TO_PB[state]


def target_state_from_pb(value: int) -> TargetState:
    return _known(_TSTATE_FROM_PB, value, "target state")


# --- corrections --------------------------------------------------------------------------


def scope_to_pb(scope: Scope) -> types_pb2.Scope:
    return types_pb2.Scope(
        all=scope.all,
        node_ids=list(scope.node_ids),
        selector=[
            types_pb2.LabelRequirement(key=k, value=v, equal=eq) for k, v, eq in scope.selector
        ],
        model_hashes=list(scope.model_hashes),
        workload_ids=list(scope.workload_ids),
    )


def scope_from_pb(msg: types_pb2.Scope) -> Scope:
    return Scope(
        all=msg.all,
        node_ids=tuple(ident(n, "node id") for n in msg.node_ids),
        selector=tuple(
            (text(r.key, "label key", 317), text(r.value, "label value", 63), r.equal)
            for r in msg.selector
        ),
        model_hashes=tuple(text(h, "model hash", 64).lower() for h in msg.model_hashes),
        workload_ids=tuple(ident(w, "workload id") for w in msg.workload_ids),
    )


def params_to_pb(params: ActionParams) -> types_pb2.ActionParams:
    msg = types_pb2.ActionParams()
    set_present(msg, params, ("power_fraction", "cpu_fraction", "grace_s", "sample_interval_s"))
    return msg


def params_from_pb(msg: types_pb2.ActionParams) -> ActionParams:
    params = ActionParams(
        power_fraction=optf(msg, "power_fraction"),
        cpu_fraction=optf(msg, "cpu_fraction"),
        grace_s=optf(msg, "grace_s"),
        sample_interval_s=optf(msg, "sample_interval_s"),
    )
    validate_params(params)
    return params


def spec_to_pb(spec: CorrectionSpec) -> types_pb2.CorrectionSpec:
    return types_pb2.CorrectionSpec(
        correction_id=spec.correction_id,
        action=action_to_pb(spec.action),
        scope=scope_to_pb(spec.scope),
        reason=spec.reason,
        issuer=spec.issuer,
        created_at_s=spec.created_at_s,
        expires_at_s=spec.expires_at_s,
        params=params_to_pb(spec.params),
        reverts=spec.reverts,
        policy_digest=spec.policy_digest,
        incident=spec.incident,
    )


def spec_from_pb(msg: types_pb2.CorrectionSpec) -> CorrectionSpec:
    return CorrectionSpec(
        correction_id=ident(msg.correction_id, "correction id"),
        action=action_from_pb(msg.action),
        scope=scope_from_pb(msg.scope),
        reason=text(msg.reason, "reason"),
        issuer=text(msg.issuer, "issuer", 256),
        created_at_s=finite(msg.created_at_s, "created_at_s"),
        expires_at_s=finite(msg.expires_at_s, "expires_at_s"),
        params=params_from_pb(msg.params),
        reverts=msg.reverts,
        policy_digest=text(msg.policy_digest, "policy digest", 64),
        incident=text(msg.incident, "incident", 64),
    )


def spec_bytes(spec: CorrectionSpec) -> bytes:
    """The canonical bytes of a spec: what is stored, delivered and (later) signed."""
    return spec_to_pb(spec).SerializeToString(deterministic=True)


def spec_from_bytes(data: bytes) -> CorrectionSpec:
    msg = types_pb2.CorrectionSpec()
    try:
        msg.ParseFromString(data)
    except Exception as exc:  # protobuf raises DecodeError, a plain Exception subclass
        raise InvalidInput("correction spec is not a valid CorrectionSpec message") from exc
    return spec_from_pb(msg)


def outcomes_to_pb(outcomes: Iterable[WorkloadOutcome]) -> list[types_pb2.WorkloadOutcome]:
    return [
        types_pb2.WorkloadOutcome(
            workload_id=o.workload_id, pids=list(o.pids), outcome=o.outcome, detail=o.detail
        )
        for o in outcomes
    ]


def outcomes_from_pb(msgs: Iterable[types_pb2.WorkloadOutcome]) -> tuple[WorkloadOutcome, ...]:
    return tuple(
        WorkloadOutcome(
            workload_id=text(o.workload_id, "workload id", MAX_ID_LEN),
            pids=tuple(o.pids),
            outcome=text(o.outcome, "outcome", 16),
            detail=text(o.detail, "outcome detail"),
        )
        for o in msgs
    )


def target_to_pb(target: TargetResult) -> types_pb2.TargetResult:
    return types_pb2.TargetResult(
        node_id=target.node_id,
        state=target_state_to_pb(target.state),
        sequence=target.sequence,
        message=target.message,
        outcomes=outcomes_to_pb(target.outcomes),
        updated_at_s=target.updated_at_s,
    )


def target_from_pb(msg: types_pb2.TargetResult) -> TargetResult:
    return TargetResult(
        node_id=msg.node_id,
        state=target_state_from_pb(msg.state),
        sequence=msg.sequence,
        message=msg.message,
        outcomes=outcomes_from_pb(msg.outcomes),
        updated_at_s=msg.updated_at_s,
    )


def correction_to_pb(c: Correction) -> types_pb2.Correction:
    msg = types_pb2.Correction(
        spec=spec_to_pb(c.spec),
        state=_CSTATE_TO_PB[c.state],
        targets=[target_to_pb(t) for t in c.targets],
        message=c.message,
        updated_at_s=c.updated_at_s,
        signatures=[signature_to_pb(s) for s in c.signatures],
        approvals_required=c.approvals_required,
        approvers=list(c.approvers),
    )
    if c.completed_at_s is not None:
        msg.completed_at_s = c.completed_at_s
    return msg


def correction_from_pb(msg: types_pb2.Correction) -> Correction:
    return Correction(
        spec=spec_from_pb(msg.spec),
        state=correction_state_from_pb(msg.state),
        targets=tuple(target_from_pb(t) for t in msg.targets),
        message=msg.message,
        updated_at_s=msg.updated_at_s,
        completed_at_s=msg.completed_at_s if msg.HasField("completed_at_s") else None,
        signatures=tuple(signature_from_pb(s) for s in msg.signatures),
        approvals_required=msg.approvals_required,
        approvers=tuple(msg.approvers),
    )


def ack_to_pb(ack: CommandAck) -> agent_pb2.CommandAck:
    return agent_pb2.CommandAck(
        correction_id=ack.correction_id,
        sequence=ack.sequence,
        state=target_state_to_pb(ack.state),
        message=ack.message,
        outcomes=outcomes_to_pb(ack.outcomes),
    )


def ack_from_pb(msg: agent_pb2.CommandAck) -> CommandAck:
    state = target_state_from_pb(msg.state)
    if state not in (TargetState.APPLIED, TargetState.FAILED, TargetState.REFUSED):
        raise InvalidInput(f"an acknowledgement cannot report state {state.value}")
    return CommandAck(
        correction_id=ident(msg.correction_id, "correction id"),
        sequence=counter(msg.sequence, "ack sequence"),
        state=state,
        message=text(msg.message, "ack message"),
        outcomes=outcomes_from_pb(msg.outcomes),
    )


MAX_SIGNATURES = 16


def signature_to_pb(sig: SignatureRecord) -> types_pb2.Signature:
    return types_pb2.Signature(
        key_id=sig.key_id,
        signer=sig.signer,
        role=sig.role,
        signature=sig.signature,
        signed_at_s=sig.signed_at_s,
    )


def signature_from_pb(msg: types_pb2.Signature) -> SignatureRecord:
    if msg.role not in ("issuer", "approver"):
        raise InvalidInput(f"signature role must be issuer or approver, not {msg.role[:20]!r}")
    if len(msg.signature) > 128:
        raise InvalidInput("signature is longer than an Ed25519 signature")
    return SignatureRecord(
        key_id=text(msg.key_id, "key id", 64),
        signer=text(msg.signer, "signer", 256),
        role=msg.role,
        signature=bytes(msg.signature),
        signed_at_s=msg.signed_at_s,
    )


def signed_correction(
    data: bytes,
    signatures: Iterable[SignatureRecord] = (),
    authority: PolicyAuthority | None = None,
) -> types_pb2.SignedCorrection:
    """A spec's exact bytes with the signatures that cover them (or the policy that
    authorises it)."""
    msg = types_pb2.SignedCorrection(spec=data, signatures=[signature_to_pb(s) for s in signatures])
    if authority is not None:
        msg.policy.CopyFrom(policy_authority_to_pb(authority))
    return msg


MAX_POLICY_BYTES = 64 * 1024


def authority_from_pb(msg: types_pb2.SignedCorrection) -> PolicyAuthority | None:
    """The policy authority a command carries (``None``: none)."""
    return policy_authority_from_pb(msg.policy) if msg.HasField("policy") else None


def policy_authority_from_pb(msg: types_pb2.PolicyAuthority) -> PolicyAuthority:
    if len(msg.document) > MAX_POLICY_BYTES:
        raise InvalidInput(f"a policy document is at most {MAX_POLICY_BYTES} bytes")
    return PolicyAuthority(bytes(msg.document), signatures_from_pb(msg.signatures))


def policy_authority_to_pb(authority: PolicyAuthority) -> types_pb2.PolicyAuthority:
    return types_pb2.PolicyAuthority(
        document=authority.document,
        signatures=[signature_to_pb(s) for s in authority.signatures],
    )


def signatures_from_pb(msgs: Iterable[types_pb2.Signature]) -> tuple[SignatureRecord, ...]:
    found = tuple(signature_from_pb(m) for m in msgs)
    if len(found) > MAX_SIGNATURES:
        raise InvalidInput(f"more than {MAX_SIGNATURES} signatures")
    return found
