"""Conversions between ``backstop.api.v1`` messages and ``backstop.core.models``."""

from __future__ import annotations

import math
from collections.abc import Iterable

from backstop.api.v1 import agent_pb2, types_pb2
from backstop.core.errors import InvalidInput
from backstop.core.models import (
    Action,
    ActionParams,
    AuditHead,
    Behaviour,
    CommandAck,
    Correction,
    CorrectionSpec,
    CorrectionState,
    Fingerprint,
    GpuSample,
    GpuUse,
    Hold,
    NodeInfo,
    Report,
    Scope,
    SignatureRecord,
    TargetResult,
    TargetState,
    WeightsFile,
    Workload,
    WorkloadOutcome,
)

MAX_ID_LEN = 128
MAX_TEXT_LEN = 4096
MAX_HOLDS = 256
"""Holds listed per workload; more are not kept (a report is bounded as a whole)."""
MAX_COUNTER = 2**63 - 1
"""Sequence numbers and counters are unsigned on the wire but stored as signed 64-bit."""

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


def _opt(msg: object, name: str) -> int | None:
    return getattr(msg, name) if msg.HasField(name) else None  # type: ignore[attr-defined]


def _optf(msg: object, name: str) -> float | None:
    return float(getattr(msg, name)) if msg.HasField(name) else None  # type: ignore[attr-defined]


def _text(value: str, what: str, limit: int = MAX_TEXT_LEN) -> str:
    if len(value) > limit:
        raise InvalidInput(f"{what} is longer than {limit} characters")
    return value


def counter(value: int, what: str) -> int:
    """A sequence number or counter that fits the stores' signed 64-bit integers."""
    if value > MAX_COUNTER:
        raise InvalidInput(f"{what} {value} is larger than {MAX_COUNTER}")
    return value


def finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise InvalidInput(f"{what} must be a finite number, not {value}")
    return value


def _ident(value: str, what: str) -> str:
    if not value:
        raise InvalidInput(f"{what} is missing")
    if len(value) > MAX_ID_LEN or not value.isprintable() or any(c.isspace() for c in value):
        raise InvalidInput(f"{what} {value[:40]!r} is not a valid identifier")
    return value


# --- actions and states -------------------------------------------------------------------


def action_to_pb(action: Action) -> types_pb2.Action:
    return _ACTION_TO_PB[action]


def action_from_pb(value: int) -> Action:
    try:
        return _ACTION_FROM_PB[value]
    except KeyError:
        raise InvalidInput(f"unknown action {value}") from None


def correction_state_from_pb(value: int) -> CorrectionState:
    try:
        return _CSTATE_FROM_PB[value]
    except KeyError:
        raise InvalidInput(f"unknown correction state {value}") from None


def target_state_to_pb(state: TargetState) -> types_pb2.TargetState:
    return _TSTATE_TO_PB[state]


def target_state_from_pb(value: int) -> TargetState:
    try:
        return _TSTATE_FROM_PB[value]
    except KeyError:
        raise InvalidInput(f"unknown target state {value}") from None


def node_id_text(value: str) -> str:
    """A node id from a request: present, printable, no whitespace, at most 128 characters."""
    return _ident(value, "node id")


# --- GPUs, workloads, nodes ---------------------------------------------------------------

_GPU_OPTIONAL = (
    "utilization_pct",
    "memory_utilization_pct",
    "memory_used_bytes",
    "memory_total_bytes",
    "power_mw",
    "power_limit_mw",
    "power_default_limit_mw",
    "temperature_c",
    "sm_clock_mhz",
    "memory_clock_mhz",
)


def gpu_to_pb(gpu: GpuSample) -> types_pb2.GpuSample:
    msg = types_pb2.GpuSample(index=gpu.index, uuid=gpu.uuid, name=gpu.name)
    for name in _GPU_OPTIONAL:
        value = getattr(gpu, name)
        if value is not None:
            setattr(msg, name, value)
    return msg


def gpu_from_pb(msg: types_pb2.GpuSample) -> GpuSample:
    fields = {name: _opt(msg, name) for name in _GPU_OPTIONAL}
    return GpuSample(
        index=msg.index,
        uuid=_text(msg.uuid, "GPU uuid", MAX_ID_LEN),
        name=_text(msg.name, "GPU name", 256),
        **fields,
    )


def fingerprint_to_pb(fp: Fingerprint) -> types_pb2.Fingerprint:
    return types_pb2.Fingerprint(
        exe=fp.exe,
        cmdline=list(fp.cmdline),
        cgroup=fp.cgroup,
        container_id=fp.container_id,
        framework=fp.framework,
        weights=[
            types_pb2.WeightsFile(
                path=w.path,
                format=w.format,
                size_bytes=w.size_bytes,
                header_sha256=w.header_sha256,
                sampled_sha256=w.sampled_sha256,
            )
            for w in fp.weights
        ],
        listening_ports=list(fp.listening_ports),
        gpus=[
            types_pb2.GpuUse(gpu_uuid=g.gpu_uuid, used_memory_bytes=g.used_memory_bytes)
            for g in fp.gpus
        ],
        behaviour=fp.behaviour.value,
        behaviour_confidence=fp.behaviour_confidence,
        model_hash=fp.model_hash,
    )


def fingerprint_from_pb(msg: types_pb2.Fingerprint) -> Fingerprint:
    try:
        behaviour = Behaviour(msg.behaviour) if msg.behaviour else Behaviour.UNKNOWN
    except ValueError:
        raise InvalidInput(f"unknown behaviour {msg.behaviour[:40]!r}") from None
    confidence = float(msg.behaviour_confidence)
    if not (0.0 <= confidence <= 1.0) or math.isnan(confidence):
        raise InvalidInput("behaviour_confidence must be within [0, 1]")
    return Fingerprint(
        exe=_text(msg.exe, "exe"),
        cmdline=tuple(_text(a, "cmdline argument") for a in msg.cmdline),
        cgroup=_text(msg.cgroup, "cgroup"),
        container_id=_text(msg.container_id, "container id", MAX_ID_LEN),
        framework=_text(msg.framework, "framework", 64),
        weights=tuple(
            WeightsFile(
                path=_text(w.path, "weights path"),
                format=_text(w.format, "weights format", 32),
                size_bytes=w.size_bytes,
                header_sha256=_text(w.header_sha256, "header hash", 64),
                sampled_sha256=_text(w.sampled_sha256, "sampled hash", 64),
            )
            for w in msg.weights
        ),
        listening_ports=tuple(int(p) for p in msg.listening_ports),
        gpus=tuple(GpuUse(g.gpu_uuid, g.used_memory_bytes) for g in msg.gpus),
        behaviour=behaviour,
        behaviour_confidence=confidence,
        model_hash=_text(msg.model_hash, "model hash", 64),
    )


def workload_to_pb(wl: Workload) -> types_pb2.Workload:
    return types_pb2.Workload(
        workload_id=wl.workload_id,
        node_id=wl.node_id,
        root_pid=wl.root_pid,
        pids=list(wl.pids),
        fingerprint=fingerprint_to_pb(wl.fingerprint),
        labels=dict(wl.labels),
        state=wl.state,
        started_at_s=wl.started_at_s,
        holds=[types_pb2.Hold(correction_id=h.correction_id, action=h.action) for h in wl.holds],
    )


def workload_from_pb(msg: types_pb2.Workload, node_id: str | None = None) -> Workload:
    """Convert; when ``node_id`` is given (the authenticated sender), it overrides the message."""
    return Workload(
        workload_id=_ident(msg.workload_id, "workload id"),
        node_id=node_id if node_id is not None else _ident(msg.node_id, "node id"),
        root_pid=msg.root_pid,
        pids=tuple(msg.pids),
        fingerprint=fingerprint_from_pb(msg.fingerprint),
        labels={
            _text(k, "label key", 317): _text(v, "label value", 256) for k, v in msg.labels.items()
        },
        state=_text(msg.state, "workload state", 32) or "running",
        started_at_s=finite(msg.started_at_s, "started_at_s"),
        holds=tuple(
            Hold(_ident(h.correction_id, "hold correction id"), _text(h.action, "hold action", 32))
            for h in msg.holds[:MAX_HOLDS]
        ),
    )


def node_to_pb(
    node: NodeInfo,
    *,
    connected: bool = False,
    last_seen_s: float = 0.0,
    workload_count: int = 0,
    replica: str = "",
) -> types_pb2.Node:
    return types_pb2.Node(
        node_id=node.node_id,
        hostname=node.hostname,
        agent_version=node.agent_version,
        labels=dict(node.labels),
        gpus=[gpu_to_pb(g) for g in node.gpus],
        nvml_available=node.nvml_available,
        capabilities=list(node.capabilities),
        connected=connected,
        last_seen_s=last_seen_s,
        workload_count=workload_count,
        replica=replica,
    )


def node_from_pb(msg: types_pb2.Node) -> NodeInfo:
    return NodeInfo(
        node_id=_ident(msg.node_id, "node id"),
        hostname=_text(msg.hostname, "hostname", 256),
        agent_version=_text(msg.agent_version, "agent version", 64),
        labels={
            _text(k, "label key", 317): _text(v, "label value", 256) for k, v in msg.labels.items()
        },
        gpus=tuple(gpu_from_pb(g) for g in msg.gpus),
        nvml_available=msg.nvml_available,
        capabilities=tuple(_text(c, "capability", 64) for c in msg.capabilities),
    )


def report_to_pb(report: Report) -> agent_pb2.Report:
    return agent_pb2.Report(
        sequence=report.sequence,
        sampled_at_s=report.sampled_at_s,
        gpus=[gpu_to_pb(g) for g in report.gpus],
        workloads=[workload_to_pb(w) for w in report.workloads],
        dropped_reports=report.dropped_reports,
        journal_head=audit_head_to_pb(report.journal_head),
        witnessed_audit_head=audit_head_to_pb(report.witnessed_audit_head),
    )


def report_from_pb(msg: agent_pb2.Report, node_id: str, *, decode_gpus: bool = True) -> Report:
    """A checked report. ``decode_gpus=False`` (the controller's ingest path) keeps the GPU
    samples as the encoded bytes that arrived (``Report.encoded_gpus``), after checking them."""
    if msg.sequence < 1:
        raise InvalidInput("report sequence must start at 1")
    workloads = tuple(workload_from_pb(w, node_id) for w in msg.workloads)
    seen: set[str] = set()
    for w in workloads:
        if w.workload_id in seen:
            raise InvalidInput(f"workload id {w.workload_id} appears twice in one report")
        seen.add(w.workload_id)
    gpus: tuple[GpuSample, ...] = ()
    encoded: tuple[tuple[str, bytes], ...] = ()
    if decode_gpus:
        gpus = tuple(gpu_from_pb(g) for g in msg.gpus)
        uuids = [g.uuid for g in gpus]
    else:
        encoded = tuple(
            (_gpu_checked(g), g.SerializeToString(deterministic=True)) for g in msg.gpus
        )
        uuids = [uuid for uuid, _ in encoded]
    if len(set(uuids)) != len(uuids):
        raise InvalidInput("a GPU uuid appears twice in one report")
    return Report(
        node_id=node_id,
        sequence=counter(msg.sequence, "report sequence"),
        sampled_at_s=finite(msg.sampled_at_s, "sampled_at_s"),
        gpus=gpus,
        workloads=workloads,
        dropped_reports=counter(msg.dropped_reports, "dropped_reports"),
        encoded_gpus=encoded,
        journal_head=audit_head_from_pb(msg.journal_head),
        witnessed_audit_head=audit_head_from_pb(msg.witnessed_audit_head),
    )


def audit_head_to_pb(head: AuditHead) -> types_pb2.AuditHead:
    return types_pb2.AuditHead(seq=head.seq, hash=head.hash)


def audit_head_from_pb(msg: types_pb2.AuditHead) -> AuditHead:
    """A checked head: ``seq`` a counter, ``hash`` empty or 64 lower-case hex digits."""
    head_hash = msg.hash
    if head_hash and (len(head_hash) != 64 or head_hash.strip("0123456789abcdef")):
        raise InvalidInput("an audit head hash must be 64 lower-case hex digits")
    if bool(msg.seq) != bool(head_hash):
        raise InvalidInput("an audit head has both an index and a hash, or neither")
    return AuditHead(counter(msg.seq, "audit head index"), head_hash)


def _gpu_checked(msg: types_pb2.GpuSample) -> str:
    """What ``gpu_from_pb`` checks, without building a GpuSample; the uuid."""
    _text(msg.name, "GPU name", 256)
    return _text(msg.uuid, "GPU uuid", MAX_ID_LEN)


def encoded_gpus(report: Report) -> tuple[tuple[str, bytes], ...]:
    """The report's GPU samples as (uuid, encoded GpuSample), as stores keep them."""
    if report.encoded_gpus:
        return report.encoded_gpus
    return tuple((g.uuid, gpu_to_pb(g).SerializeToString(deterministic=True)) for g in report.gpus)


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
        node_ids=tuple(_ident(n, "node id") for n in msg.node_ids),
        selector=tuple(
            (_text(r.key, "label key", 317), _text(r.value, "label value", 63), r.equal)
            for r in msg.selector
        ),
        model_hashes=tuple(_text(h, "model hash", 64).lower() for h in msg.model_hashes),
        workload_ids=tuple(_ident(w, "workload id") for w in msg.workload_ids),
    )


def params_to_pb(params: ActionParams) -> types_pb2.ActionParams:
    msg = types_pb2.ActionParams()
    for name in ("power_fraction", "cpu_fraction", "grace_s", "sample_interval_s"):
        value = getattr(params, name)
        if value is not None:
            setattr(msg, name, value)
    return msg


def params_from_pb(msg: types_pb2.ActionParams) -> ActionParams:
    params = ActionParams(
        power_fraction=_optf(msg, "power_fraction"),
        cpu_fraction=_optf(msg, "cpu_fraction"),
        grace_s=_optf(msg, "grace_s"),
        sample_interval_s=_optf(msg, "sample_interval_s"),
    )
    validate_params(params)
    return params


def validate_params(params: ActionParams) -> None:
    if params.power_fraction is not None and not (0.0 < params.power_fraction <= 1.0):
        raise InvalidInput("power fraction must be within (0, 1]")
    if params.cpu_fraction is not None and not (0.0 < params.cpu_fraction <= 4096.0):
        raise InvalidInput("cpu quota must be a positive number of cores")
    if params.grace_s is not None and not (0.0 <= params.grace_s <= 3600.0):
        raise InvalidInput("grace period must be within [0, 3600] seconds")
    if params.sample_interval_s is not None and not (0.1 <= params.sample_interval_s <= 3600.0):
        raise InvalidInput("sample interval must be within [0.1, 3600] seconds")


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
    )


def spec_from_pb(msg: types_pb2.CorrectionSpec) -> CorrectionSpec:
    return CorrectionSpec(
        correction_id=_ident(msg.correction_id, "correction id"),
        action=action_from_pb(msg.action),
        scope=scope_from_pb(msg.scope),
        reason=_text(msg.reason, "reason"),
        issuer=_text(msg.issuer, "issuer", 256),
        created_at_s=finite(msg.created_at_s, "created_at_s"),
        expires_at_s=finite(msg.expires_at_s, "expires_at_s"),
        params=params_from_pb(msg.params),
        reverts=msg.reverts,
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
            workload_id=_text(o.workload_id, "workload id", MAX_ID_LEN),
            pids=tuple(o.pids),
            outcome=_text(o.outcome, "outcome", 16),
            detail=_text(o.detail, "outcome detail"),
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
        correction_id=_ident(msg.correction_id, "correction id"),
        sequence=counter(msg.sequence, "ack sequence"),
        state=state,
        message=_text(msg.message, "ack message"),
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
        key_id=_text(msg.key_id, "key id", 64),
        signer=_text(msg.signer, "signer", 256),
        role=msg.role,
        signature=bytes(msg.signature),
        signed_at_s=msg.signed_at_s,
    )


def signed_correction(
    data: bytes, signatures: Iterable[SignatureRecord] = ()
) -> types_pb2.SignedCorrection:
    """A spec's exact bytes with the signatures that cover them."""
    return types_pb2.SignedCorrection(
        spec=data, signatures=[signature_to_pb(s) for s in signatures]
    )


def signatures_from_pb(msgs: Iterable[types_pb2.Signature]) -> tuple[SignatureRecord, ...]:
    found = tuple(signature_from_pb(m) for m in msgs)
    if len(found) > MAX_SIGNATURES:
        raise InvalidInput(f"more than {MAX_SIGNATURES} signatures")
    return found
