from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_UNSPECIFIED: _ClassVar[Action]
    ACTION_OBSERVE: _ClassVar[Action]
    ACTION_THROTTLE: _ClassVar[Action]
    ACTION_PAUSE: _ClassVar[Action]
    ACTION_RESUME: _ClassVar[Action]
    ACTION_TERMINATE: _ClassVar[Action]
    ACTION_SHUTDOWN: _ClassVar[Action]

class CorrectionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CORRECTION_STATE_UNSPECIFIED: _ClassVar[CorrectionState]
    CORRECTION_STATE_PROPOSED: _ClassVar[CorrectionState]
    CORRECTION_STATE_APPROVED: _ClassVar[CorrectionState]
    CORRECTION_STATE_DISPATCHED: _ClassVar[CorrectionState]
    CORRECTION_STATE_COMPLETED: _ClassVar[CorrectionState]
    CORRECTION_STATE_FAILED: _ClassVar[CorrectionState]
    CORRECTION_STATE_REVERTED: _ClassVar[CorrectionState]
    CORRECTION_STATE_EXPIRED: _ClassVar[CorrectionState]

class TargetState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TARGET_STATE_UNSPECIFIED: _ClassVar[TargetState]
    TARGET_STATE_PENDING: _ClassVar[TargetState]
    TARGET_STATE_DISPATCHED: _ClassVar[TargetState]
    TARGET_STATE_APPLIED: _ClassVar[TargetState]
    TARGET_STATE_FAILED: _ClassVar[TargetState]
    TARGET_STATE_REFUSED: _ClassVar[TargetState]
    TARGET_STATE_UNREACHABLE: _ClassVar[TargetState]
ACTION_UNSPECIFIED: Action
ACTION_OBSERVE: Action
ACTION_THROTTLE: Action
ACTION_PAUSE: Action
ACTION_RESUME: Action
ACTION_TERMINATE: Action
ACTION_SHUTDOWN: Action
CORRECTION_STATE_UNSPECIFIED: CorrectionState
CORRECTION_STATE_PROPOSED: CorrectionState
CORRECTION_STATE_APPROVED: CorrectionState
CORRECTION_STATE_DISPATCHED: CorrectionState
CORRECTION_STATE_COMPLETED: CorrectionState
CORRECTION_STATE_FAILED: CorrectionState
CORRECTION_STATE_REVERTED: CorrectionState
CORRECTION_STATE_EXPIRED: CorrectionState
TARGET_STATE_UNSPECIFIED: TargetState
TARGET_STATE_PENDING: TargetState
TARGET_STATE_DISPATCHED: TargetState
TARGET_STATE_APPLIED: TargetState
TARGET_STATE_FAILED: TargetState
TARGET_STATE_REFUSED: TargetState
TARGET_STATE_UNREACHABLE: TargetState

class GpuSample(_message.Message):
    __slots__ = ("index", "uuid", "name", "utilization_pct", "memory_utilization_pct", "memory_used_bytes", "memory_total_bytes", "power_mw", "power_limit_mw", "power_default_limit_mw", "temperature_c", "sm_clock_mhz", "memory_clock_mhz")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    UTILIZATION_PCT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_UTILIZATION_PCT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    POWER_MW_FIELD_NUMBER: _ClassVar[int]
    POWER_LIMIT_MW_FIELD_NUMBER: _ClassVar[int]
    POWER_DEFAULT_LIMIT_MW_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_C_FIELD_NUMBER: _ClassVar[int]
    SM_CLOCK_MHZ_FIELD_NUMBER: _ClassVar[int]
    MEMORY_CLOCK_MHZ_FIELD_NUMBER: _ClassVar[int]
    index: int
    uuid: str
    name: str
    utilization_pct: int
    memory_utilization_pct: int
    memory_used_bytes: int
    memory_total_bytes: int
    power_mw: int
    power_limit_mw: int
    power_default_limit_mw: int
    temperature_c: int
    sm_clock_mhz: int
    memory_clock_mhz: int
    def __init__(self, index: _Optional[int] = ..., uuid: _Optional[str] = ..., name: _Optional[str] = ..., utilization_pct: _Optional[int] = ..., memory_utilization_pct: _Optional[int] = ..., memory_used_bytes: _Optional[int] = ..., memory_total_bytes: _Optional[int] = ..., power_mw: _Optional[int] = ..., power_limit_mw: _Optional[int] = ..., power_default_limit_mw: _Optional[int] = ..., temperature_c: _Optional[int] = ..., sm_clock_mhz: _Optional[int] = ..., memory_clock_mhz: _Optional[int] = ...) -> None: ...

class GpuUse(_message.Message):
    __slots__ = ("gpu_uuid", "used_memory_bytes", "sm_util_pct", "gpu_instance_id", "compute_instance_id")
    GPU_UUID_FIELD_NUMBER: _ClassVar[int]
    USED_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    SM_UTIL_PCT_FIELD_NUMBER: _ClassVar[int]
    GPU_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    gpu_uuid: str
    used_memory_bytes: int
    sm_util_pct: int
    gpu_instance_id: int
    compute_instance_id: int
    def __init__(self, gpu_uuid: _Optional[str] = ..., used_memory_bytes: _Optional[int] = ..., sm_util_pct: _Optional[int] = ..., gpu_instance_id: _Optional[int] = ..., compute_instance_id: _Optional[int] = ...) -> None: ...

class WeightsFile(_message.Message):
    __slots__ = ("path", "format", "size_bytes", "header_sha256", "sampled_sha256", "invalid_reason")
    PATH_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    HEADER_SHA256_FIELD_NUMBER: _ClassVar[int]
    SAMPLED_SHA256_FIELD_NUMBER: _ClassVar[int]
    INVALID_REASON_FIELD_NUMBER: _ClassVar[int]
    path: str
    format: str
    size_bytes: int
    header_sha256: str
    sampled_sha256: str
    invalid_reason: str
    def __init__(self, path: _Optional[str] = ..., format: _Optional[str] = ..., size_bytes: _Optional[int] = ..., header_sha256: _Optional[str] = ..., sampled_sha256: _Optional[str] = ..., invalid_reason: _Optional[str] = ...) -> None: ...

class ModelIdentity(_message.Message):
    __slots__ = ("model_id", "structure_id", "architecture", "name", "parameters", "formats", "quantisation", "size_class", "context_length", "tensors", "valid", "invalid_reason", "bytes_read")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    STRUCTURE_ID_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    FORMATS_FIELD_NUMBER: _ClassVar[int]
    QUANTISATION_FIELD_NUMBER: _ClassVar[int]
    SIZE_CLASS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_LENGTH_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    VALID_FIELD_NUMBER: _ClassVar[int]
    INVALID_REASON_FIELD_NUMBER: _ClassVar[int]
    BYTES_READ_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    structure_id: str
    architecture: str
    name: str
    parameters: int
    formats: _containers.RepeatedScalarFieldContainer[str]
    quantisation: str
    size_class: str
    context_length: int
    tensors: int
    valid: bool
    invalid_reason: str
    bytes_read: int
    def __init__(self, model_id: _Optional[str] = ..., structure_id: _Optional[str] = ..., architecture: _Optional[str] = ..., name: _Optional[str] = ..., parameters: _Optional[int] = ..., formats: _Optional[_Iterable[str]] = ..., quantisation: _Optional[str] = ..., size_class: _Optional[str] = ..., context_length: _Optional[int] = ..., tensors: _Optional[int] = ..., valid: _Optional[bool] = ..., invalid_reason: _Optional[str] = ..., bytes_read: _Optional[int] = ...) -> None: ...

class Fingerprint(_message.Message):
    __slots__ = ("exe", "cmdline", "cgroup", "container_id", "framework", "weights", "listening_ports", "gpus", "behaviour", "behaviour_confidence", "model_hash", "model")
    EXE_FIELD_NUMBER: _ClassVar[int]
    CMDLINE_FIELD_NUMBER: _ClassVar[int]
    CGROUP_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    LISTENING_PORTS_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    BEHAVIOUR_FIELD_NUMBER: _ClassVar[int]
    BEHAVIOUR_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_HASH_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    exe: str
    cmdline: _containers.RepeatedScalarFieldContainer[str]
    cgroup: str
    container_id: str
    framework: str
    weights: _containers.RepeatedCompositeFieldContainer[WeightsFile]
    listening_ports: _containers.RepeatedScalarFieldContainer[int]
    gpus: _containers.RepeatedCompositeFieldContainer[GpuUse]
    behaviour: str
    behaviour_confidence: float
    model_hash: str
    model: ModelIdentity
    def __init__(self, exe: _Optional[str] = ..., cmdline: _Optional[_Iterable[str]] = ..., cgroup: _Optional[str] = ..., container_id: _Optional[str] = ..., framework: _Optional[str] = ..., weights: _Optional[_Iterable[_Union[WeightsFile, _Mapping]]] = ..., listening_ports: _Optional[_Iterable[int]] = ..., gpus: _Optional[_Iterable[_Union[GpuUse, _Mapping]]] = ..., behaviour: _Optional[str] = ..., behaviour_confidence: _Optional[float] = ..., model_hash: _Optional[str] = ..., model: _Optional[_Union[ModelIdentity, _Mapping]] = ...) -> None: ...

class Workload(_message.Message):
    __slots__ = ("workload_id", "node_id", "root_pid", "pids", "fingerprint", "labels", "state", "started_at_s", "holds", "serving", "unattributed", "network")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    WORKLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ROOT_PID_FIELD_NUMBER: _ClassVar[int]
    PIDS_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_S_FIELD_NUMBER: _ClassVar[int]
    HOLDS_FIELD_NUMBER: _ClassVar[int]
    SERVING_FIELD_NUMBER: _ClassVar[int]
    UNATTRIBUTED_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    workload_id: str
    node_id: str
    root_pid: int
    pids: _containers.RepeatedScalarFieldContainer[int]
    fingerprint: Fingerprint
    labels: _containers.ScalarMap[str, str]
    state: str
    started_at_s: float
    holds: _containers.RepeatedCompositeFieldContainer[Hold]
    serving: ServingStats
    unattributed: str
    network: NetworkUse
    def __init__(self, workload_id: _Optional[str] = ..., node_id: _Optional[str] = ..., root_pid: _Optional[int] = ..., pids: _Optional[_Iterable[int]] = ..., fingerprint: _Optional[_Union[Fingerprint, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., state: _Optional[str] = ..., started_at_s: _Optional[float] = ..., holds: _Optional[_Iterable[_Union[Hold, _Mapping]]] = ..., serving: _Optional[_Union[ServingStats, _Mapping]] = ..., unattributed: _Optional[str] = ..., network: _Optional[_Union[NetworkUse, _Mapping]] = ...) -> None: ...

class NetworkUse(_message.Message):
    __slots__ = ("source", "egress_bytes", "ingress_bytes", "egress_bytes_per_s", "ingress_bytes_per_s", "unavailable", "sampled_at_s")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    EGRESS_BYTES_FIELD_NUMBER: _ClassVar[int]
    INGRESS_BYTES_FIELD_NUMBER: _ClassVar[int]
    EGRESS_BYTES_PER_S_FIELD_NUMBER: _ClassVar[int]
    INGRESS_BYTES_PER_S_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_FIELD_NUMBER: _ClassVar[int]
    SAMPLED_AT_S_FIELD_NUMBER: _ClassVar[int]
    source: str
    egress_bytes: int
    ingress_bytes: int
    egress_bytes_per_s: float
    ingress_bytes_per_s: float
    unavailable: str
    sampled_at_s: float
    def __init__(self, source: _Optional[str] = ..., egress_bytes: _Optional[int] = ..., ingress_bytes: _Optional[int] = ..., egress_bytes_per_s: _Optional[float] = ..., ingress_bytes_per_s: _Optional[float] = ..., unavailable: _Optional[str] = ..., sampled_at_s: _Optional[float] = ...) -> None: ...

class ServingStats(_message.Message):
    __slots__ = ("server", "port", "model_name", "generated_tokens_per_s", "prompt_tokens_per_s", "requests_running", "requests_waiting", "inferences_per_s", "sampled_at_s")
    SERVER_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    GENERATED_TOKENS_PER_S_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_PER_S_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_RUNNING_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_WAITING_FIELD_NUMBER: _ClassVar[int]
    INFERENCES_PER_S_FIELD_NUMBER: _ClassVar[int]
    SAMPLED_AT_S_FIELD_NUMBER: _ClassVar[int]
    server: str
    port: int
    model_name: str
    generated_tokens_per_s: float
    prompt_tokens_per_s: float
    requests_running: float
    requests_waiting: float
    inferences_per_s: float
    sampled_at_s: float
    def __init__(self, server: _Optional[str] = ..., port: _Optional[int] = ..., model_name: _Optional[str] = ..., generated_tokens_per_s: _Optional[float] = ..., prompt_tokens_per_s: _Optional[float] = ..., requests_running: _Optional[float] = ..., requests_waiting: _Optional[float] = ..., inferences_per_s: _Optional[float] = ..., sampled_at_s: _Optional[float] = ...) -> None: ...

class Hold(_message.Message):
    __slots__ = ("correction_id", "action")
    CORRECTION_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    correction_id: str
    action: str
    def __init__(self, correction_id: _Optional[str] = ..., action: _Optional[str] = ...) -> None: ...

class AuditHead(_message.Message):
    __slots__ = ("seq", "hash")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    seq: int
    hash: str
    def __init__(self, seq: _Optional[int] = ..., hash: _Optional[str] = ...) -> None: ...

class LabelRequirement(_message.Message):
    __slots__ = ("key", "value", "equal")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EQUAL_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    equal: bool
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ..., equal: _Optional[bool] = ...) -> None: ...

class Scope(_message.Message):
    __slots__ = ("all", "node_ids", "selector", "model_hashes", "workload_ids")
    ALL_FIELD_NUMBER: _ClassVar[int]
    NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    MODEL_HASHES_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_IDS_FIELD_NUMBER: _ClassVar[int]
    all: bool
    node_ids: _containers.RepeatedScalarFieldContainer[str]
    selector: _containers.RepeatedCompositeFieldContainer[LabelRequirement]
    model_hashes: _containers.RepeatedScalarFieldContainer[str]
    workload_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, all: _Optional[bool] = ..., node_ids: _Optional[_Iterable[str]] = ..., selector: _Optional[_Iterable[_Union[LabelRequirement, _Mapping]]] = ..., model_hashes: _Optional[_Iterable[str]] = ..., workload_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ActionParams(_message.Message):
    __slots__ = ("power_fraction", "cpu_fraction", "grace_s", "sample_interval_s")
    POWER_FRACTION_FIELD_NUMBER: _ClassVar[int]
    CPU_FRACTION_FIELD_NUMBER: _ClassVar[int]
    GRACE_S_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    power_fraction: float
    cpu_fraction: float
    grace_s: float
    sample_interval_s: float
    def __init__(self, power_fraction: _Optional[float] = ..., cpu_fraction: _Optional[float] = ..., grace_s: _Optional[float] = ..., sample_interval_s: _Optional[float] = ...) -> None: ...

class CorrectionSpec(_message.Message):
    __slots__ = ("correction_id", "action", "scope", "reason", "issuer", "created_at_s", "expires_at_s", "params", "reverts", "policy_digest", "incident")
    CORRECTION_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_S_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_S_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    REVERTS_FIELD_NUMBER: _ClassVar[int]
    POLICY_DIGEST_FIELD_NUMBER: _ClassVar[int]
    INCIDENT_FIELD_NUMBER: _ClassVar[int]
    correction_id: str
    action: Action
    scope: Scope
    reason: str
    issuer: str
    created_at_s: float
    expires_at_s: float
    params: ActionParams
    reverts: str
    policy_digest: str
    incident: str
    def __init__(self, correction_id: _Optional[str] = ..., action: _Optional[_Union[Action, str]] = ..., scope: _Optional[_Union[Scope, _Mapping]] = ..., reason: _Optional[str] = ..., issuer: _Optional[str] = ..., created_at_s: _Optional[float] = ..., expires_at_s: _Optional[float] = ..., params: _Optional[_Union[ActionParams, _Mapping]] = ..., reverts: _Optional[str] = ..., policy_digest: _Optional[str] = ..., incident: _Optional[str] = ...) -> None: ...

class Signature(_message.Message):
    __slots__ = ("key_id", "signer", "role", "signature", "signed_at_s")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNER_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SIGNED_AT_S_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    signer: str
    role: str
    signature: bytes
    signed_at_s: float
    def __init__(self, key_id: _Optional[str] = ..., signer: _Optional[str] = ..., role: _Optional[str] = ..., signature: _Optional[bytes] = ..., signed_at_s: _Optional[float] = ...) -> None: ...

class SignedCorrection(_message.Message):
    __slots__ = ("spec", "signatures", "policy")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    SIGNATURES_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    spec: bytes
    signatures: _containers.RepeatedCompositeFieldContainer[Signature]
    policy: PolicyAuthority
    def __init__(self, spec: _Optional[bytes] = ..., signatures: _Optional[_Iterable[_Union[Signature, _Mapping]]] = ..., policy: _Optional[_Union[PolicyAuthority, _Mapping]] = ...) -> None: ...

class PolicyAuthority(_message.Message):
    __slots__ = ("document", "signatures")
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURES_FIELD_NUMBER: _ClassVar[int]
    document: bytes
    signatures: _containers.RepeatedCompositeFieldContainer[Signature]
    def __init__(self, document: _Optional[bytes] = ..., signatures: _Optional[_Iterable[_Union[Signature, _Mapping]]] = ...) -> None: ...

class WorkloadOutcome(_message.Message):
    __slots__ = ("workload_id", "pids", "outcome", "detail")
    WORKLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    PIDS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    workload_id: str
    pids: _containers.RepeatedScalarFieldContainer[int]
    outcome: str
    detail: str
    def __init__(self, workload_id: _Optional[str] = ..., pids: _Optional[_Iterable[int]] = ..., outcome: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class TargetResult(_message.Message):
    __slots__ = ("node_id", "state", "sequence", "message", "outcomes", "updated_at_s")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_S_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    state: TargetState
    sequence: int
    message: str
    outcomes: _containers.RepeatedCompositeFieldContainer[WorkloadOutcome]
    updated_at_s: float
    def __init__(self, node_id: _Optional[str] = ..., state: _Optional[_Union[TargetState, str]] = ..., sequence: _Optional[int] = ..., message: _Optional[str] = ..., outcomes: _Optional[_Iterable[_Union[WorkloadOutcome, _Mapping]]] = ..., updated_at_s: _Optional[float] = ...) -> None: ...

class Correction(_message.Message):
    __slots__ = ("spec", "state", "targets", "message", "updated_at_s", "completed_at_s", "signatures", "approvals_required", "approvers", "signed_spec", "audit_head")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_S_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_S_FIELD_NUMBER: _ClassVar[int]
    SIGNATURES_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    APPROVERS_FIELD_NUMBER: _ClassVar[int]
    SIGNED_SPEC_FIELD_NUMBER: _ClassVar[int]
    AUDIT_HEAD_FIELD_NUMBER: _ClassVar[int]
    spec: CorrectionSpec
    state: CorrectionState
    targets: _containers.RepeatedCompositeFieldContainer[TargetResult]
    message: str
    updated_at_s: float
    completed_at_s: float
    signatures: _containers.RepeatedCompositeFieldContainer[Signature]
    approvals_required: int
    approvers: _containers.RepeatedScalarFieldContainer[str]
    signed_spec: bytes
    audit_head: AuditHead
    def __init__(self, spec: _Optional[_Union[CorrectionSpec, _Mapping]] = ..., state: _Optional[_Union[CorrectionState, str]] = ..., targets: _Optional[_Iterable[_Union[TargetResult, _Mapping]]] = ..., message: _Optional[str] = ..., updated_at_s: _Optional[float] = ..., completed_at_s: _Optional[float] = ..., signatures: _Optional[_Iterable[_Union[Signature, _Mapping]]] = ..., approvals_required: _Optional[int] = ..., approvers: _Optional[_Iterable[str]] = ..., signed_spec: _Optional[bytes] = ..., audit_head: _Optional[_Union[AuditHead, _Mapping]] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("node_id", "hostname", "agent_version", "labels", "gpus", "nvml_available", "capabilities", "connected", "last_seen_s", "workload_count", "replica", "witnessed_audit_head", "journal_head", "unattributed_count")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    NVML_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_S_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_COUNT_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    WITNESSED_AUDIT_HEAD_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_HEAD_FIELD_NUMBER: _ClassVar[int]
    UNATTRIBUTED_COUNT_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    hostname: str
    agent_version: str
    labels: _containers.ScalarMap[str, str]
    gpus: _containers.RepeatedCompositeFieldContainer[GpuSample]
    nvml_available: bool
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    connected: bool
    last_seen_s: float
    workload_count: int
    replica: str
    witnessed_audit_head: AuditHead
    journal_head: AuditHead
    unattributed_count: int
    def __init__(self, node_id: _Optional[str] = ..., hostname: _Optional[str] = ..., agent_version: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., gpus: _Optional[_Iterable[_Union[GpuSample, _Mapping]]] = ..., nvml_available: _Optional[bool] = ..., capabilities: _Optional[_Iterable[str]] = ..., connected: _Optional[bool] = ..., last_seen_s: _Optional[float] = ..., workload_count: _Optional[int] = ..., replica: _Optional[str] = ..., witnessed_audit_head: _Optional[_Union[AuditHead, _Mapping]] = ..., journal_head: _Optional[_Union[AuditHead, _Mapping]] = ..., unattributed_count: _Optional[int] = ...) -> None: ...
