from backstop.api.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AlertState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALERT_STATE_UNSPECIFIED: _ClassVar[AlertState]
    ALERT_STATE_FIRING: _ClassVar[AlertState]
    ALERT_STATE_ACKNOWLEDGED: _ClassVar[AlertState]
    ALERT_STATE_RESOLVED: _ClassVar[AlertState]

class PolicyState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POLICY_STATE_UNSPECIFIED: _ClassVar[PolicyState]
    POLICY_STATE_PROPOSED: _ClassVar[PolicyState]
    POLICY_STATE_ACTIVE: _ClassVar[PolicyState]
    POLICY_STATE_SUPERSEDED: _ClassVar[PolicyState]
    POLICY_STATE_WITHDRAWN: _ClassVar[PolicyState]
ALERT_STATE_UNSPECIFIED: AlertState
ALERT_STATE_FIRING: AlertState
ALERT_STATE_ACKNOWLEDGED: AlertState
ALERT_STATE_RESOLVED: AlertState
POLICY_STATE_UNSPECIFIED: PolicyState
POLICY_STATE_PROPOSED: PolicyState
POLICY_STATE_ACTIVE: PolicyState
POLICY_STATE_SUPERSEDED: PolicyState
POLICY_STATE_WITHDRAWN: PolicyState

class Alert(_message.Message):
    __slots__ = ("alert_id", "dedup_key", "policy", "policy_version", "severity", "node_id", "workload_id", "summary", "details_json", "state", "raised_at_s", "last_seen_at_s", "acked_by", "acked_at_s", "resolved_at_s")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    DEDUP_KEY_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RAISED_AT_S_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_AT_S_FIELD_NUMBER: _ClassVar[int]
    ACKED_BY_FIELD_NUMBER: _ClassVar[int]
    ACKED_AT_S_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_AT_S_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    dedup_key: str
    policy: str
    policy_version: int
    severity: str
    node_id: str
    workload_id: str
    summary: str
    details_json: str
    state: AlertState
    raised_at_s: float
    last_seen_at_s: float
    acked_by: str
    acked_at_s: float
    resolved_at_s: float
    def __init__(self, alert_id: _Optional[str] = ..., dedup_key: _Optional[str] = ..., policy: _Optional[str] = ..., policy_version: _Optional[int] = ..., severity: _Optional[str] = ..., node_id: _Optional[str] = ..., workload_id: _Optional[str] = ..., summary: _Optional[str] = ..., details_json: _Optional[str] = ..., state: _Optional[_Union[AlertState, str]] = ..., raised_at_s: _Optional[float] = ..., last_seen_at_s: _Optional[float] = ..., acked_by: _Optional[str] = ..., acked_at_s: _Optional[float] = ..., resolved_at_s: _Optional[float] = ...) -> None: ...

class ListAlertsRequest(_message.Message):
    __slots__ = ("all", "limit")
    ALL_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    all: bool
    limit: int
    def __init__(self, all: _Optional[bool] = ..., limit: _Optional[int] = ...) -> None: ...

class ListAlertsResponse(_message.Message):
    __slots__ = ("alerts",)
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[Alert]
    def __init__(self, alerts: _Optional[_Iterable[_Union[Alert, _Mapping]]] = ...) -> None: ...

class AckAlertRequest(_message.Message):
    __slots__ = ("alert_id", "requested_by")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    requested_by: str
    def __init__(self, alert_id: _Optional[str] = ..., requested_by: _Optional[str] = ...) -> None: ...

class PolicyVersion(_message.Message):
    __slots__ = ("name", "version", "document", "digest", "action", "state", "applied_by", "applied_at_s", "ended_at_s", "signatures", "approval", "message")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    APPLIED_BY_FIELD_NUMBER: _ClassVar[int]
    APPLIED_AT_S_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_S_FIELD_NUMBER: _ClassVar[int]
    SIGNATURES_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    document: bytes
    digest: str
    action: str
    state: PolicyState
    applied_by: str
    applied_at_s: float
    ended_at_s: float
    signatures: _containers.RepeatedCompositeFieldContainer[_types_pb2.Signature]
    approval: str
    message: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., document: _Optional[bytes] = ..., digest: _Optional[str] = ..., action: _Optional[str] = ..., state: _Optional[_Union[PolicyState, str]] = ..., applied_by: _Optional[str] = ..., applied_at_s: _Optional[float] = ..., ended_at_s: _Optional[float] = ..., signatures: _Optional[_Iterable[_Union[_types_pb2.Signature, _Mapping]]] = ..., approval: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ApplyPolicyRequest(_message.Message):
    __slots__ = ("document", "signatures", "source", "requested_by")
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    document: bytes
    signatures: _containers.RepeatedCompositeFieldContainer[_types_pb2.Signature]
    source: str
    requested_by: str
    def __init__(self, document: _Optional[bytes] = ..., signatures: _Optional[_Iterable[_Union[_types_pb2.Signature, _Mapping]]] = ..., source: _Optional[str] = ..., requested_by: _Optional[str] = ...) -> None: ...

class ApprovePolicyRequest(_message.Message):
    __slots__ = ("name", "version", "signature", "requested_by")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    signature: _types_pb2.Signature
    requested_by: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., signature: _Optional[_Union[_types_pb2.Signature, _Mapping]] = ..., requested_by: _Optional[str] = ...) -> None: ...

class DeletePolicyRequest(_message.Message):
    __slots__ = ("name", "signatures", "digest", "requested_by")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIGNATURES_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    name: str
    signatures: _containers.RepeatedCompositeFieldContainer[_types_pb2.Signature]
    digest: str
    requested_by: str
    def __init__(self, name: _Optional[str] = ..., signatures: _Optional[_Iterable[_Union[_types_pb2.Signature, _Mapping]]] = ..., digest: _Optional[str] = ..., requested_by: _Optional[str] = ...) -> None: ...

class ListPoliciesRequest(_message.Message):
    __slots__ = ("name", "include_ended")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_ENDED_FIELD_NUMBER: _ClassVar[int]
    name: str
    include_ended: bool
    def __init__(self, name: _Optional[str] = ..., include_ended: _Optional[bool] = ...) -> None: ...

class ListPoliciesResponse(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[PolicyVersion]
    def __init__(self, versions: _Optional[_Iterable[_Union[PolicyVersion, _Mapping]]] = ...) -> None: ...

class TestPolicyRequest(_message.Message):
    __slots__ = ("document", "source")
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    document: bytes
    source: str
    def __init__(self, document: _Optional[bytes] = ..., source: _Optional[str] = ...) -> None: ...

class PolicyMatch(_message.Message):
    __slots__ = ("workload", "reasons")
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    workload: _types_pb2.Workload
    reasons: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, workload: _Optional[_Union[_types_pb2.Workload, _Mapping]] = ..., reasons: _Optional[_Iterable[str]] = ...) -> None: ...

class TestPolicyResponse(_message.Message):
    __slots__ = ("matches", "workloads_checked", "digest")
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    WORKLOADS_CHECKED_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    matches: _containers.RepeatedCompositeFieldContainer[PolicyMatch]
    workloads_checked: int
    digest: str
    def __init__(self, matches: _Optional[_Iterable[_Union[PolicyMatch, _Mapping]]] = ..., workloads_checked: _Optional[int] = ..., digest: _Optional[str] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[_types_pb2.Node]
    def __init__(self, nodes: _Optional[_Iterable[_Union[_types_pb2.Node, _Mapping]]] = ...) -> None: ...

class ListWorkloadsRequest(_message.Message):
    __slots__ = ("node_id", "model_id")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    model_id: str
    def __init__(self, node_id: _Optional[str] = ..., model_id: _Optional[str] = ...) -> None: ...

class ListWorkloadsResponse(_message.Message):
    __slots__ = ("workloads",)
    WORKLOADS_FIELD_NUMBER: _ClassVar[int]
    workloads: _containers.RepeatedCompositeFieldContainer[_types_pb2.Workload]
    def __init__(self, workloads: _Optional[_Iterable[_Union[_types_pb2.Workload, _Mapping]]] = ...) -> None: ...

class ListCorrectionsRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class ListCorrectionsResponse(_message.Message):
    __slots__ = ("corrections",)
    CORRECTIONS_FIELD_NUMBER: _ClassVar[int]
    corrections: _containers.RepeatedCompositeFieldContainer[_types_pb2.Correction]
    def __init__(self, corrections: _Optional[_Iterable[_Union[_types_pb2.Correction, _Mapping]]] = ...) -> None: ...

class CreateCorrectionRequest(_message.Message):
    __slots__ = ("action", "scope", "reason", "issuer", "ttl_s", "params", "issuer_signature", "signed", "incident")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    TTL_S_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    ISSUER_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SIGNED_FIELD_NUMBER: _ClassVar[int]
    INCIDENT_FIELD_NUMBER: _ClassVar[int]
    action: _types_pb2.Action
    scope: _types_pb2.Scope
    reason: str
    issuer: str
    ttl_s: float
    params: _types_pb2.ActionParams
    issuer_signature: _types_pb2.Signature
    signed: _types_pb2.SignedCorrection
    incident: str
    def __init__(self, action: _Optional[_Union[_types_pb2.Action, str]] = ..., scope: _Optional[_Union[_types_pb2.Scope, _Mapping]] = ..., reason: _Optional[str] = ..., issuer: _Optional[str] = ..., ttl_s: _Optional[float] = ..., params: _Optional[_Union[_types_pb2.ActionParams, _Mapping]] = ..., issuer_signature: _Optional[_Union[_types_pb2.Signature, _Mapping]] = ..., signed: _Optional[_Union[_types_pb2.SignedCorrection, _Mapping]] = ..., incident: _Optional[str] = ...) -> None: ...

class ApproveCorrectionRequest(_message.Message):
    __slots__ = ("correction_id", "approver", "signature")
    CORRECTION_ID_FIELD_NUMBER: _ClassVar[int]
    APPROVER_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    correction_id: str
    approver: str
    signature: _types_pb2.Signature
    def __init__(self, correction_id: _Optional[str] = ..., approver: _Optional[str] = ..., signature: _Optional[_Union[_types_pb2.Signature, _Mapping]] = ...) -> None: ...

class ResumeCorrectionRequest(_message.Message):
    __slots__ = ("correction_id", "reason", "issuer", "signed", "incident")
    CORRECTION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    SIGNED_FIELD_NUMBER: _ClassVar[int]
    INCIDENT_FIELD_NUMBER: _ClassVar[int]
    correction_id: str
    reason: str
    issuer: str
    signed: _types_pb2.SignedCorrection
    incident: str
    def __init__(self, correction_id: _Optional[str] = ..., reason: _Optional[str] = ..., issuer: _Optional[str] = ..., signed: _Optional[_Union[_types_pb2.SignedCorrection, _Mapping]] = ..., incident: _Optional[str] = ...) -> None: ...

class GetCorrectionRequest(_message.Message):
    __slots__ = ("correction_id",)
    CORRECTION_ID_FIELD_NUMBER: _ClassVar[int]
    correction_id: str
    def __init__(self, correction_id: _Optional[str] = ...) -> None: ...

class ExportAuditRequest(_message.Message):
    __slots__ = ("after_seq", "limit")
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    after_seq: int
    limit: int
    def __init__(self, after_seq: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class AuditEntry(_message.Message):
    __slots__ = ("seq", "ts", "actor", "action", "subject", "details_json", "prev_hash", "hash")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    PREV_HASH_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    seq: int
    ts: float
    actor: str
    action: str
    subject: str
    details_json: str
    prev_hash: str
    hash: str
    def __init__(self, seq: _Optional[int] = ..., ts: _Optional[float] = ..., actor: _Optional[str] = ..., action: _Optional[str] = ..., subject: _Optional[str] = ..., details_json: _Optional[str] = ..., prev_hash: _Optional[str] = ..., hash: _Optional[str] = ...) -> None: ...

class CreateEnrolmentTokenRequest(_message.Message):
    __slots__ = ("node_id", "ttl_s")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_S_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    ttl_s: float
    def __init__(self, node_id: _Optional[str] = ..., ttl_s: _Optional[float] = ...) -> None: ...

class CreateEnrolmentTokenResponse(_message.Message):
    __slots__ = ("token", "expires_at_s")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_S_FIELD_NUMBER: _ClassVar[int]
    token: str
    expires_at_s: float
    def __init__(self, token: _Optional[str] = ..., expires_at_s: _Optional[float] = ...) -> None: ...

class RevokeNodeRequest(_message.Message):
    __slots__ = ("node_id", "reason")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    reason: str
    def __init__(self, node_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RevokeNodeResponse(_message.Message):
    __slots__ = ("certificates_revoked",)
    CERTIFICATES_REVOKED_FIELD_NUMBER: _ClassVar[int]
    certificates_revoked: int
    def __init__(self, certificates_revoked: _Optional[int] = ...) -> None: ...

class PreviewScopeRequest(_message.Message):
    __slots__ = ("scope", "limit")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    scope: _types_pb2.Scope
    limit: int
    def __init__(self, scope: _Optional[_Union[_types_pb2.Scope, _Mapping]] = ..., limit: _Optional[int] = ...) -> None: ...

class PreviewScopeResponse(_message.Message):
    __slots__ = ("node_ids", "workload_count", "workloads")
    NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_COUNT_FIELD_NUMBER: _ClassVar[int]
    WORKLOADS_FIELD_NUMBER: _ClassVar[int]
    node_ids: _containers.RepeatedScalarFieldContainer[str]
    workload_count: int
    workloads: _containers.RepeatedCompositeFieldContainer[_types_pb2.Workload]
    def __init__(self, node_ids: _Optional[_Iterable[str]] = ..., workload_count: _Optional[int] = ..., workloads: _Optional[_Iterable[_Union[_types_pb2.Workload, _Mapping]]] = ...) -> None: ...

class GetAuditHeadRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIResponse(_message.Message):
    __slots__ = ("name", "role", "authenticated")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    AUTHENTICATED_FIELD_NUMBER: _ClassVar[int]
    name: str
    role: str
    authenticated: bool
    def __init__(self, name: _Optional[str] = ..., role: _Optional[str] = ..., authenticated: _Optional[bool] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "history")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelSummary]
    history: _containers.RepeatedCompositeFieldContainer[ModelSighting]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelSummary, _Mapping]]] = ..., history: _Optional[_Iterable[_Union[ModelSighting, _Mapping]]] = ...) -> None: ...

class ModelSummary(_message.Message):
    __slots__ = ("model", "copies", "node_ids", "gpu_uuids", "gpu_memory_bytes", "tokens_per_second", "served_names", "first_seen_s", "last_seen_s")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    COPIES_FIELD_NUMBER: _ClassVar[int]
    NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    GPU_UUIDS_FIELD_NUMBER: _ClassVar[int]
    GPU_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    SERVED_NAMES_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_S_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_S_FIELD_NUMBER: _ClassVar[int]
    model: _types_pb2.ModelIdentity
    copies: int
    node_ids: _containers.RepeatedScalarFieldContainer[str]
    gpu_uuids: _containers.RepeatedScalarFieldContainer[str]
    gpu_memory_bytes: int
    tokens_per_second: float
    served_names: _containers.RepeatedScalarFieldContainer[str]
    first_seen_s: float
    last_seen_s: float
    def __init__(self, model: _Optional[_Union[_types_pb2.ModelIdentity, _Mapping]] = ..., copies: _Optional[int] = ..., node_ids: _Optional[_Iterable[str]] = ..., gpu_uuids: _Optional[_Iterable[str]] = ..., gpu_memory_bytes: _Optional[int] = ..., tokens_per_second: _Optional[float] = ..., served_names: _Optional[_Iterable[str]] = ..., first_seen_s: _Optional[float] = ..., last_seen_s: _Optional[float] = ...) -> None: ...

class ModelSighting(_message.Message):
    __slots__ = ("model_id", "workload_id", "node_id", "first_seen_s", "last_seen_s", "running")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_S_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_S_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    workload_id: str
    node_id: str
    first_seen_s: float
    last_seen_s: float
    running: bool
    def __init__(self, model_id: _Optional[str] = ..., workload_id: _Optional[str] = ..., node_id: _Optional[str] = ..., first_seen_s: _Optional[float] = ..., last_seen_s: _Optional[float] = ..., running: _Optional[bool] = ...) -> None: ...

class Incident(_message.Message):
    __slots__ = ("incident_id", "title", "severity", "state", "opened_by", "opened_at_s", "closed_by", "closed_at_s", "summary")
    INCIDENT_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    OPENED_BY_FIELD_NUMBER: _ClassVar[int]
    OPENED_AT_S_FIELD_NUMBER: _ClassVar[int]
    CLOSED_BY_FIELD_NUMBER: _ClassVar[int]
    CLOSED_AT_S_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    incident_id: str
    title: str
    severity: str
    state: str
    opened_by: str
    opened_at_s: float
    closed_by: str
    closed_at_s: float
    summary: str
    def __init__(self, incident_id: _Optional[str] = ..., title: _Optional[str] = ..., severity: _Optional[str] = ..., state: _Optional[str] = ..., opened_by: _Optional[str] = ..., opened_at_s: _Optional[float] = ..., closed_by: _Optional[str] = ..., closed_at_s: _Optional[float] = ..., summary: _Optional[str] = ...) -> None: ...

class OpenIncidentRequest(_message.Message):
    __slots__ = ("title", "severity", "requested_by")
    TITLE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    title: str
    severity: str
    requested_by: str
    def __init__(self, title: _Optional[str] = ..., severity: _Optional[str] = ..., requested_by: _Optional[str] = ...) -> None: ...

class ListIncidentsRequest(_message.Message):
    __slots__ = ("open_only", "limit")
    OPEN_ONLY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    open_only: bool
    limit: int
    def __init__(self, open_only: _Optional[bool] = ..., limit: _Optional[int] = ...) -> None: ...

class ListIncidentsResponse(_message.Message):
    __slots__ = ("incidents",)
    INCIDENTS_FIELD_NUMBER: _ClassVar[int]
    incidents: _containers.RepeatedCompositeFieldContainer[Incident]
    def __init__(self, incidents: _Optional[_Iterable[_Union[Incident, _Mapping]]] = ...) -> None: ...

class GetIncidentRequest(_message.Message):
    __slots__ = ("incident_id",)
    INCIDENT_ID_FIELD_NUMBER: _ClassVar[int]
    incident_id: str
    def __init__(self, incident_id: _Optional[str] = ...) -> None: ...

class CloseIncidentRequest(_message.Message):
    __slots__ = ("incident_id", "summary", "requested_by")
    INCIDENT_ID_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    incident_id: str
    summary: str
    requested_by: str
    def __init__(self, incident_id: _Optional[str] = ..., summary: _Optional[str] = ..., requested_by: _Optional[str] = ...) -> None: ...

class IncidentEntry(_message.Message):
    __slots__ = ("happened_at_s", "actor", "kind", "subject", "detail")
    HAPPENED_AT_S_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    happened_at_s: float
    actor: str
    kind: str
    subject: str
    detail: str
    def __init__(self, happened_at_s: _Optional[float] = ..., actor: _Optional[str] = ..., kind: _Optional[str] = ..., subject: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class IncidentHolding(_message.Message):
    __slots__ = ("correction_id", "action", "state", "node_ids", "expires_at_s")
    CORRECTION_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_S_FIELD_NUMBER: _ClassVar[int]
    correction_id: str
    action: str
    state: str
    node_ids: _containers.RepeatedScalarFieldContainer[str]
    expires_at_s: float
    def __init__(self, correction_id: _Optional[str] = ..., action: _Optional[str] = ..., state: _Optional[str] = ..., node_ids: _Optional[_Iterable[str]] = ..., expires_at_s: _Optional[float] = ...) -> None: ...

class IncidentMilestones(_message.Message):
    __slots__ = ("detected_at_s", "decided_at_s", "applied_at_s", "recovered_at_s")
    DETECTED_AT_S_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_S_FIELD_NUMBER: _ClassVar[int]
    APPLIED_AT_S_FIELD_NUMBER: _ClassVar[int]
    RECOVERED_AT_S_FIELD_NUMBER: _ClassVar[int]
    detected_at_s: float
    decided_at_s: float
    applied_at_s: float
    recovered_at_s: float
    def __init__(self, detected_at_s: _Optional[float] = ..., decided_at_s: _Optional[float] = ..., applied_at_s: _Optional[float] = ..., recovered_at_s: _Optional[float] = ...) -> None: ...

class IncidentTimeline(_message.Message):
    __slots__ = ("incident", "entries", "milestones", "in_force", "correction_ids")
    INCIDENT_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    MILESTONES_FIELD_NUMBER: _ClassVar[int]
    IN_FORCE_FIELD_NUMBER: _ClassVar[int]
    CORRECTION_IDS_FIELD_NUMBER: _ClassVar[int]
    incident: Incident
    entries: _containers.RepeatedCompositeFieldContainer[IncidentEntry]
    milestones: IncidentMilestones
    in_force: _containers.RepeatedCompositeFieldContainer[IncidentHolding]
    correction_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, incident: _Optional[_Union[Incident, _Mapping]] = ..., entries: _Optional[_Iterable[_Union[IncidentEntry, _Mapping]]] = ..., milestones: _Optional[_Union[IncidentMilestones, _Mapping]] = ..., in_force: _Optional[_Iterable[_Union[IncidentHolding, _Mapping]]] = ..., correction_ids: _Optional[_Iterable[str]] = ...) -> None: ...
