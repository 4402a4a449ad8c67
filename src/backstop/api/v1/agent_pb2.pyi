from backstop.api.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Hello(_message.Message):
    __slots__ = ("node", "last_command_sequence", "protocol_version", "witnessed_audit_head", "journal_head", "node_policies")
    NODE_FIELD_NUMBER: _ClassVar[int]
    LAST_COMMAND_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    WITNESSED_AUDIT_HEAD_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_HEAD_FIELD_NUMBER: _ClassVar[int]
    NODE_POLICIES_FIELD_NUMBER: _ClassVar[int]
    node: _types_pb2.Node
    last_command_sequence: int
    protocol_version: int
    witnessed_audit_head: _types_pb2.AuditHead
    journal_head: _types_pb2.AuditHead
    node_policies: str
    def __init__(self, node: _Optional[_Union[_types_pb2.Node, _Mapping]] = ..., last_command_sequence: _Optional[int] = ..., protocol_version: _Optional[int] = ..., witnessed_audit_head: _Optional[_Union[_types_pb2.AuditHead, _Mapping]] = ..., journal_head: _Optional[_Union[_types_pb2.AuditHead, _Mapping]] = ..., node_policies: _Optional[str] = ...) -> None: ...

class Report(_message.Message):
    __slots__ = ("sequence", "sampled_at_s", "gpus", "workloads", "dropped_reports", "journal_head", "witnessed_audit_head")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SAMPLED_AT_S_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    WORKLOADS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_REPORTS_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_HEAD_FIELD_NUMBER: _ClassVar[int]
    WITNESSED_AUDIT_HEAD_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    sampled_at_s: float
    gpus: _containers.RepeatedCompositeFieldContainer[_types_pb2.GpuSample]
    workloads: _containers.RepeatedCompositeFieldContainer[_types_pb2.Workload]
    dropped_reports: int
    journal_head: _types_pb2.AuditHead
    witnessed_audit_head: _types_pb2.AuditHead
    def __init__(self, sequence: _Optional[int] = ..., sampled_at_s: _Optional[float] = ..., gpus: _Optional[_Iterable[_Union[_types_pb2.GpuSample, _Mapping]]] = ..., workloads: _Optional[_Iterable[_Union[_types_pb2.Workload, _Mapping]]] = ..., dropped_reports: _Optional[int] = ..., journal_head: _Optional[_Union[_types_pb2.AuditHead, _Mapping]] = ..., witnessed_audit_head: _Optional[_Union[_types_pb2.AuditHead, _Mapping]] = ...) -> None: ...

class CommandAck(_message.Message):
    __slots__ = ("correction_id", "sequence", "state", "message", "outcomes")
    CORRECTION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    correction_id: str
    sequence: int
    state: _types_pb2.TargetState
    message: str
    outcomes: _containers.RepeatedCompositeFieldContainer[_types_pb2.WorkloadOutcome]
    def __init__(self, correction_id: _Optional[str] = ..., sequence: _Optional[int] = ..., state: _Optional[_Union[_types_pb2.TargetState, str]] = ..., message: _Optional[str] = ..., outcomes: _Optional[_Iterable[_Union[_types_pb2.WorkloadOutcome, _Mapping]]] = ...) -> None: ...

class AgentMessage(_message.Message):
    __slots__ = ("hello", "report", "ack")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    report: Report
    ack: CommandAck
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., report: _Optional[_Union[Report, _Mapping]] = ..., ack: _Optional[_Union[CommandAck, _Mapping]] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("controller_id", "report_interval_s", "protocol_version", "last_report_sequence")
    CONTROLLER_ID_FIELD_NUMBER: _ClassVar[int]
    REPORT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    LAST_REPORT_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    controller_id: str
    report_interval_s: float
    protocol_version: int
    last_report_sequence: int
    def __init__(self, controller_id: _Optional[str] = ..., report_interval_s: _Optional[float] = ..., protocol_version: _Optional[int] = ..., last_report_sequence: _Optional[int] = ...) -> None: ...

class ReportAck(_message.Message):
    __slots__ = ("sequence",)
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    def __init__(self, sequence: _Optional[int] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("sequence", "correction", "audit_head")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CORRECTION_FIELD_NUMBER: _ClassVar[int]
    AUDIT_HEAD_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    correction: _types_pb2.SignedCorrection
    audit_head: _types_pb2.AuditHead
    def __init__(self, sequence: _Optional[int] = ..., correction: _Optional[_Union[_types_pb2.SignedCorrection, _Mapping]] = ..., audit_head: _Optional[_Union[_types_pb2.AuditHead, _Mapping]] = ...) -> None: ...

class NodePolicies(_message.Message):
    __slots__ = ("enforce", "deletions")
    ENFORCE_FIELD_NUMBER: _ClassVar[int]
    DELETIONS_FIELD_NUMBER: _ClassVar[int]
    enforce: _containers.RepeatedCompositeFieldContainer[_types_pb2.PolicyAuthority]
    deletions: _containers.RepeatedCompositeFieldContainer[_types_pb2.PolicyAuthority]
    def __init__(self, enforce: _Optional[_Iterable[_Union[_types_pb2.PolicyAuthority, _Mapping]]] = ..., deletions: _Optional[_Iterable[_Union[_types_pb2.PolicyAuthority, _Mapping]]] = ...) -> None: ...

class Ping(_message.Message):
    __slots__ = ("sent_at_s",)
    SENT_AT_S_FIELD_NUMBER: _ClassVar[int]
    sent_at_s: float
    def __init__(self, sent_at_s: _Optional[float] = ...) -> None: ...

class ControllerMessage(_message.Message):
    __slots__ = ("welcome", "command", "ping", "report_ack", "policies")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    REPORT_ACK_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    command: Command
    ping: Ping
    report_ack: ReportAck
    policies: NodePolicies
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., command: _Optional[_Union[Command, _Mapping]] = ..., ping: _Optional[_Union[Ping, _Mapping]] = ..., report_ack: _Optional[_Union[ReportAck, _Mapping]] = ..., policies: _Optional[_Union[NodePolicies, _Mapping]] = ...) -> None: ...
