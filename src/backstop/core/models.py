"""Domain models shared by every part of Backstop.

Frozen dataclasses only; the protobuf messages in ``backstop.api.v1`` are converted
to and from these in one place (``backstop.wire``). Units are in the field names
(``_bytes``, ``_mw`` for milliwatts, ``_pct``, ``_s`` for seconds since the epoch or
durations).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from backstop.core.network import NetworkUse
from backstop.core.serving import ServingStats

EMPTY_LABELS: Mapping[str, str] = MappingProxyType({})


class Action(enum.StrEnum):
    """The correction ladder, from mild to severe (design brief, section 3)."""

    OBSERVE = "observe"
    """Raise the sampling rate; no effect on the workload."""
    THROTTLE = "throttle"
    """Cap GPU power (NVML) and CPU time (cgroup ``cpu.max``); undone by resume."""
    PAUSE = "pause"
    """Freeze the process tree (``cgroup.freeze`` or SIGSTOP); GPU memory stays allocated."""
    RESUME = "resume"
    """Undo an earlier observe, throttle, pause or shutdown fence."""
    TERMINATE = "terminate"
    """SIGTERM, a grace period, then SIGKILL of the whole tree."""
    SHUTDOWN = "shutdown"
    """Terminate every model-serving workload in scope and fence the nodes."""

    @property
    def severe(self) -> bool:
        """Severe actions destroy state and need a quorum of approvers."""
        return self in (Action.TERMINATE, Action.SHUTDOWN)

    @property
    def revertible(self) -> bool:
        """Whether ``resume`` can undo this action."""
        return self in (Action.OBSERVE, Action.THROTTLE, Action.PAUSE, Action.SHUTDOWN)


class CorrectionState(enum.StrEnum):
    """Lifecycle of a correction: proposed → approved → dispatched → completed → reverted."""

    PROPOSED = "proposed"
    APPROVED = "approved"
    DISPATCHED = "dispatched"
    COMPLETED = "completed"
    FAILED = "failed"
    REVERTED = "reverted"
    EXPIRED = "expired"

    @property
    def terminal(self) -> bool:
        return self in (
            CorrectionState.COMPLETED,
            CorrectionState.FAILED,
            CorrectionState.REVERTED,
            CorrectionState.EXPIRED,
        )


class TargetState(enum.StrEnum):
    """Outcome of a correction on one node."""

    PENDING = "pending"
    """Recorded; not yet sent (the agent is not connected right now)."""
    DISPATCHED = "dispatched"
    """Sent to the agent; no acknowledgement yet."""
    APPLIED = "applied"
    FAILED = "failed"
    REFUSED = "refused"
    """The agent rejected the command (bad signature, expired, replayed, invalid)."""
    UNREACHABLE = "unreachable"
    """Not acknowledged: the agent is away or did not answer in time. Not final: delivery is
    tried until the correction expires, and a late ack still counts."""

    @property
    def terminal(self) -> bool:
        """A final outcome (applied, failed, refused): no later ack changes it."""
        return self in (TargetState.APPLIED, TargetState.FAILED, TargetState.REFUSED)


class Behaviour(enum.StrEnum):
    """What a workload appears to be doing."""

    SERVING = "serving"
    TRAINING = "training"
    OTHER = "other"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One accelerator as NVML saw it at one instant."""

    index: int
    uuid: str
    name: str
    utilization_pct: int | None = None
    memory_utilization_pct: int | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    power_mw: int | None = None
    power_limit_mw: int | None = None
    power_default_limit_mw: int | None = None
    temperature_c: int | None = None
    sm_clock_mhz: int | None = None
    memory_clock_mhz: int | None = None


@dataclass(frozen=True, slots=True)
class GpuProcess:
    """A process holding a context on one GPU."""

    gpu_uuid: str
    pid: int
    used_memory_bytes: int | None = None
    sm_util_pct: int | None = None
    """Its SM share since the previous sample (``None``: NVML gave no reading)."""
    gpu_instance_id: int | None = None
    """Its MIG GPU instance; ``None`` when MIG is off or NVML did not say."""
    compute_instance_id: int | None = None


@dataclass(frozen=True, slots=True)
class GpuUse:
    """A workload's use of one GPU (summed over its processes)."""

    gpu_uuid: str
    used_memory_bytes: int = 0
    sm_util_pct: int | None = None
    """SM share of its processes since the previous sample (``None``: unavailable)."""
    gpu_instance_id: int | None = None
    """The MIG GPU instance its processes run in (``None``: MIG off, unknown or several)."""
    compute_instance_id: int | None = None


@dataclass(frozen=True, slots=True)
class WeightsFile:
    """A model weights file a workload has open or mapped.

    ``header_sha256`` hashes the format header (tensor names, shapes, dtypes);
    ``sampled_sha256`` hashes the size plus fixed-size chunks at fixed offsets, so a
    100 GB file is identified by reading a constant number of bytes.
    """

    path: str
    format: str
    size_bytes: int
    header_sha256: str
    sampled_sha256: str
    invalid_reason: str = ""
    """Why the file is not valid weights of its format; ``""`` when it parsed."""


@dataclass(frozen=True, slots=True)
class IdentifiedModel:
    """The model a workload's weights make up, identified by its tensors
    (:mod:`backstop.agent.weights`): the same ``model_id`` whatever the sharding, tensor
    order or metadata; ``structure_id`` shared by fine-tunes of one architecture."""

    model_id: str = ""
    structure_id: str = ""
    architecture: str = ""
    name: str = ""
    parameters: int = 0
    formats: tuple[str, ...] = ()
    quantisation: str = ""
    size_class: str = ""
    context_length: int = 0
    tensors: int = 0
    valid: bool = False
    invalid_reason: str = ""
    bytes_read: int = 0


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What identifies a workload: its program, its model, its resources and its behaviour."""

    exe: str = ""
    cmdline: tuple[str, ...] = ()
    """Command line with secrets redacted."""
    cgroup: str = ""
    container_id: str = ""
    framework: str = ""
    weights: tuple[WeightsFile, ...] = ()
    listening_ports: tuple[int, ...] = ()
    gpus: tuple[GpuUse, ...] = ()
    behaviour: Behaviour = Behaviour.UNKNOWN
    behaviour_confidence: float = 0.0
    model_hash: str = ""
    """Hash over the sampled hashes of all weights files; empty when none were found."""
    model: IdentifiedModel | None = None
    """The model its weights make up; ``None`` when it holds no weights file."""


@dataclass(frozen=True, slots=True)
class Hold:
    """A correction whose effect holds a workload (paused, throttled or stopped)."""

    correction_id: str
    action: str
    """pause | throttle | shutdown"""


@dataclass(frozen=True, slots=True)
class AuditHead:
    """The head of a hash-chained log: its last entry's index and hash (``0, ""`` if empty).

    Others keep the heads they have seen (witnesses), so a log cut short or rewritten after
    them is detected: see :func:`backstop.security.witness.verify_against_witnesses`.
    """

    seq: int = 0
    hash: str = ""

    @property
    def empty(self) -> bool:
        return self.seq == 0


@dataclass(frozen=True, slots=True)
class Workload:
    """A process tree that uses an accelerator or serves a model."""

    workload_id: str
    node_id: str
    root_pid: int
    pids: tuple[int, ...]
    fingerprint: Fingerprint
    labels: Mapping[str, str] = field(default_factory=lambda: EMPTY_LABELS)
    state: str = "running"
    """running | paused | throttled | terminated, as last enforced by the agent."""
    started_at_s: float = 0.0
    holds: tuple[Hold, ...] = ()
    """Every correction in force on this workload, oldest first."""
    serving: ServingStats | None = None
    """What its own model server says about its work (``None``: no server answered)."""
    unattributed: str = ""
    """``""`` for a process tree in the agent's view; else GPU use it cannot attribute to one
    of its processes, and why (the pid is as NVML reports it; it is never signalled)."""
    network: NetworkUse | None = None
    """Its network traffic (``None``: not read yet)."""


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A node as its agent introduces itself."""

    node_id: str
    hostname: str = ""
    agent_version: str = ""
    labels: Mapping[str, str] = field(default_factory=lambda: EMPTY_LABELS)
    gpus: tuple[GpuSample, ...] = ()
    nvml_available: bool = False
    capabilities: tuple[str, ...] = ()
    """Mechanisms available on the node, e.g. ``cgroup.freeze``, ``nvml.power_limit``."""


@dataclass(frozen=True, slots=True)
class Report:
    """One periodic report from an agent."""

    node_id: str
    sequence: int
    """Per-agent report counter, monotonic across restarts (for deduplication)."""
    sampled_at_s: float
    gpus: tuple[GpuSample, ...] = ()
    workloads: tuple[Workload, ...] = ()
    dropped_reports: int = 0
    """Reports the agent's spool had to drop since it started."""
    journal_head: AuditHead = field(default_factory=AuditHead)
    """The head of the agent's own journal when it reported."""
    witnessed_audit_head: AuditHead = field(default_factory=AuditHead)
    """The newest controller audit head the agent received (and journaled)."""
    encoded_gpus: tuple[tuple[str, bytes], ...] = ()
    """The GPU samples as (uuid, encoded GpuSample) pairs, as they arrived: the controller
    checks and stores these bytes without decoding them (``gpus`` is then empty)."""


@dataclass(frozen=True, slots=True)
class ActionParams:
    """Parameters of an action; ``None`` means the action's default."""

    power_fraction: float | None = None
    """throttle: GPU power limit as a fraction of the default limit, in (0, 1]."""
    cpu_fraction: float | None = None
    """throttle: CPU quota in cores (``cpu.max``), e.g. 0.5 for half a core."""
    grace_s: float | None = None
    """terminate/shutdown: seconds between SIGTERM and SIGKILL."""
    sample_interval_s: float | None = None
    """observe: sampling interval while the correction is active."""

    DEFAULT_POWER_FRACTION = 0.5
    DEFAULT_GRACE_S = 10.0
    DEFAULT_OBSERVE_INTERVAL_S = 1.0


@dataclass(frozen=True, slots=True)
class Scope:
    """Which workloads a correction applies to. Non-empty criteria are ANDed."""

    all: bool = False
    node_ids: tuple[str, ...] = ()
    selector: tuple[tuple[str, str, bool], ...] = ()
    """Label requirements as (key, value, equal); equal=False means ``key!=value``."""
    model_hashes: tuple[str, ...] = ()
    """Hash prefixes matched against a workload's model hash and weights hashes."""
    workload_ids: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (
            self.all or self.node_ids or self.selector or self.model_hashes or self.workload_ids
        )

    @property
    def names_workloads(self) -> bool:
        """Whether it picks workloads (selector, model hashes, workload ids), not only nodes:
        then matching none is news, not success."""
        return not self.all and bool(self.selector or self.model_hashes or self.workload_ids)


@dataclass(frozen=True, slots=True)
class CorrectionSpec:
    """What an operator asked for. Immutable once created; signed as a whole (security)."""

    correction_id: str
    action: Action
    scope: Scope
    reason: str
    issuer: str
    created_at_s: float
    expires_at_s: float
    params: ActionParams = field(default_factory=ActionParams)
    reverts: str = ""
    """For resume: the id of the correction being undone."""
    policy_digest: str = ""
    """Set when a policy started it: the digest of that policy version's document."""
    incident: str = ""
    """The incident it belongs to (``core.incidents``); signed with the rest of the spec."""


@dataclass(frozen=True, slots=True)
class PolicyAuthority:
    """What authorises a correction a policy started: the policy version's exact document and
    the signatures (issuer, approvers) over it."""

    document: bytes = b""
    signatures: tuple[SignatureRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class WorkloadOutcome:
    """What an agent did to one workload."""

    workload_id: str
    pids: tuple[int, ...]
    outcome: str
    """applied | failed | skipped"""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class TargetResult:
    """State of a correction on one node."""

    node_id: str
    state: TargetState
    sequence: int = 0
    message: str = ""
    outcomes: tuple[WorkloadOutcome, ...] = ()
    updated_at_s: float = 0.0


@dataclass(frozen=True, slots=True)
class SignatureRecord:
    """An operator's Ed25519 signature over a correction's canonical spec bytes."""

    key_id: str
    signer: str
    role: str
    """issuer | approver"""
    signature: bytes
    signed_at_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Correction:
    """A correction as the controller tracks it."""

    spec: CorrectionSpec
    state: CorrectionState
    targets: tuple[TargetResult, ...] = ()
    message: str = ""
    updated_at_s: float = 0.0
    completed_at_s: float | None = None
    signatures: tuple[SignatureRecord, ...] = ()
    approvals_required: int = 0
    approvers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Command:
    """A correction as delivered to one agent, with the agent's sequence number.

    ``spec_bytes`` are the exact bytes the signatures cover; ``spec`` is their decoding.
    """

    sequence: int
    """Delivery order on this agent's stream; replay protection does not rest on it."""
    spec: CorrectionSpec
    spec_bytes: bytes = b""
    signatures: tuple[SignatureRecord, ...] = ()
    audit_head: AuditHead = field(default_factory=AuditHead)
    """The controller's audit head when the command was issued (the agent journals it)."""
    authority: PolicyAuthority | None = None
    """For a correction a policy started: the policy that authorises it."""


@dataclass(frozen=True, slots=True)
class CommandAck:
    """An agent's answer to a command."""

    correction_id: str
    sequence: int
    state: TargetState
    message: str = ""
    outcomes: tuple[WorkloadOutcome, ...] = ()
