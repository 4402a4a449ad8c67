"""Conversions of what agents observe between ``backstop.api.v1`` and ``backstop.core.models``:
GPU samples, fingerprints, workloads, nodes, reports and audit heads. Corrections are in
:mod:`backstop.wire.correction_convert`; the field bounds in :mod:`backstop.wire.checks`."""

from __future__ import annotations

import math

from backstop.api.v1 import agent_pb2, types_pb2
from backstop.core.errors import InvalidInput
from backstop.core.models import (
    AuditHead,
    Behaviour,
    Fingerprint,
    GpuSample,
    Hold,
    NodeInfo,
    Report,
    WeightsFile,
    Workload,
)
from backstop.wire.checks import (
    MAX_ID_LEN,
    counter,
    finite,
    ident,
    labels,
    opt,
    set_present,
    text,
)
from backstop.wire.model_convert import model_from_pb, model_to_pb
from backstop.wire.serving_convert import serving_from_pb, serving_to_pb
from backstop.wire.usage_convert import (
    gpu_use_from_pb,
    gpu_use_to_pb,
    network_from_pb,
    network_to_pb,
)

MAX_HOLDS = 256
"""Holds listed per workload; more are not kept (a report is bounded as a whole)."""

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
    set_present(msg, gpu, _GPU_OPTIONAL)
    return msg


def gpu_from_pb(msg: types_pb2.GpuSample) -> GpuSample:
    fields = {name: opt(msg, name) for name in _GPU_OPTIONAL}
    return GpuSample(
        index=msg.index,
        uuid=text(msg.uuid, "GPU uuid", MAX_ID_LEN),
        name=text(msg.name, "GPU name", 256),
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
                invalid_reason=w.invalid_reason,
            )
            for w in fp.weights
        ],
        listening_ports=list(fp.listening_ports),
        gpus=[gpu_use_to_pb(g) for g in fp.gpus],
        behaviour=fp.behaviour.value,
        behaviour_confidence=fp.behaviour_confidence,
        model_hash=fp.model_hash,
        model=model_to_pb(fp.model) if fp.model is not None else None,
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
        exe=text(msg.exe, "exe"),
        cmdline=tuple(text(a, "cmdline argument") for a in msg.cmdline),
        cgroup=text(msg.cgroup, "cgroup"),
        container_id=text(msg.container_id, "container id", MAX_ID_LEN),
        framework=text(msg.framework, "framework", 64),
        weights=tuple(
            WeightsFile(
                path=text(w.path, "weights path"),
                format=text(w.format, "weights format", 32),
                size_bytes=w.size_bytes,
                header_sha256=text(w.header_sha256, "header hash", 64),
                sampled_sha256=text(w.sampled_sha256, "sampled hash", 64),
                invalid_reason=text(w.invalid_reason, "weights invalid reason", 1024),
            )
            for w in msg.weights
        ),
        listening_ports=tuple(int(p) for p in msg.listening_ports),
        gpus=tuple(gpu_use_from_pb(g) for g in msg.gpus),
        behaviour=behaviour,
        behaviour_confidence=confidence,
        model_hash=text(msg.model_hash, "model hash", 64),
        model=model_from_pb(msg.model) if msg.HasField("model") else None,
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
        serving=serving_to_pb(wl.serving) if wl.serving is not None else None,
        unattributed=wl.unattributed,
        network=network_to_pb(wl.network) if wl.network is not None else None,
    )


def workload_from_pb(msg: types_pb2.Workload, node_id: str | None = None) -> Workload:
    """Convert; when ``node_id`` is given (the authenticated sender), it overrides the message."""
    return Workload(
        workload_id=ident(msg.workload_id, "workload id"),
        node_id=node_id if node_id is not None else ident(msg.node_id, "node id"),
        root_pid=msg.root_pid,
        pids=tuple(msg.pids),
        fingerprint=fingerprint_from_pb(msg.fingerprint),
        labels=labels(msg.labels),
        state=text(msg.state, "workload state", 32) or "running",
        started_at_s=finite(msg.started_at_s, "started_at_s"),
        holds=tuple(
            Hold(
                ident(h.correction_id, "hold correction id"),
                text(h.action, "hold action", 32),
            )
            for h in msg.holds[:MAX_HOLDS]
        ),
        serving=serving_from_pb(msg.serving) if msg.HasField("serving") else None,
        unattributed=text(msg.unattributed, "unattributed reason", 512),
        network=network_from_pb(msg.network) if msg.HasField("network") else None,
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
        node_id=ident(msg.node_id, "node id"),
        hostname=text(msg.hostname, "hostname", 256),
        agent_version=text(msg.agent_version, "agent version", 64),
        labels=labels(msg.labels),
        gpus=tuple(gpu_from_pb(g) for g in msg.gpus),
        nvml_available=msg.nvml_available,
        capabilities=tuple(text(c, "capability", 64) for c in msg.capabilities),
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
    text(msg.name, "GPU name", 256)
    return text(msg.uuid, "GPU uuid", MAX_ID_LEN)


def encoded_gpus(report: Report) -> tuple[tuple[str, bytes], ...]:
    """The report's GPU samples as (uuid, encoded GpuSample), as stores keep them."""
    if report.encoded_gpus:
        return report.encoded_gpus
    return tuple((g.uuid, gpu_to_pb(g).SerializeToString(deterministic=True)) for g in report.gpus)
