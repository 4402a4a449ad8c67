"""The store interface every backend implements (and the shared store test suite checks)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from backstop.core.alerts import Alert, AlertDelivery, AlertSpec, AlertState
from backstop.core.fleet import ModelSighting
from backstop.core.incidents import Incident
from backstop.core.models import (
    AuditHead,
    CommandAck,
    Correction,
    CorrectionSpec,
    CorrectionState,
    NodeInfo,
    Report,
    SignatureRecord,
    TargetResult,
    TargetState,
    Workload,
    WorkloadOutcome,
)
from backstop.core.policies import PolicyState, PolicyVersion
from backstop.security.audit import AuditEntry


@dataclass(frozen=True, slots=True)
class NodeRecord:
    info: NodeInfo
    connected: bool
    last_seen_s: float
    workload_count: int
    replica: str = ""
    """The controller replica holding the node's stream ('' when not connected)."""
    witnessed_audit_head: AuditHead = field(default_factory=AuditHead)
    """The newest controller audit head the node reported having received."""
    journal_head: AuditHead = field(default_factory=AuditHead)
    """The newest head of the node's own journal it reported."""


@dataclass(frozen=True, slots=True)
class PendingCommand:
    """A command stored for one agent and not yet acknowledged."""

    node_id: str
    sequence: int
    spec: CorrectionSpec
    spec_bytes: bytes
    signatures: tuple[SignatureRecord, ...]


NewTarget = tuple[str, TargetState, str]
"""A target to add: its node, state and message."""


class Store(Protocol):
    """Durable state of the controller. Every method is a single transaction."""

    def close(self) -> None: ...
    def schema_version(self) -> int:
        """The newest migration applied: a cheap query, the health probe's."""
        ...

    # nodes and reports
    def upsert_node(self, node: NodeInfo, now_s: float, replica: str = "") -> None:
        """Record a node's inventory; it is connected, its stream held by ``replica``."""
        ...

    def set_connected(self, node_id: str, connected: bool, now_s: float, replica: str = "") -> None:
        """Mark a node (dis)connected. A disconnect naming ``replica`` only counts while that
        replica still holds the node (it may have moved to another replica meanwhile)."""
        ...

    def mark_all_disconnected(self) -> None: ...
    def heartbeat(self, replica: str, now_s: float, stale_after_s: float) -> int:
        """Record that ``replica`` is alive; release (mark disconnected) the nodes held by
        replicas silent for longer than ``stale_after_s``, returning how many."""
        ...

    def list_nodes(self) -> list[NodeRecord]: ...
    def get_node(self, node_id: str) -> NodeRecord | None: ...
    def record_report(self, report: Report, now_s: float) -> bool:
        """Store a report; False (and nothing changed) if its sequence was already seen."""
        ...

    def record_reports(self, reports: Sequence[Report], now_s: float) -> list[bool | None]:
        """Store reports in one transaction: True stored, False a repeat, None unknown node."""
        ...

    def last_report_sequence(self, node_id: str) -> int:
        """The highest report sequence stored for the node (0 for none)."""
        ...

    def record_node_heads(
        self, node_id: str, witnessed_audit_head: AuditHead, journal_head: AuditHead
    ) -> None:
        """Keep the heads a node reported, each only when it is further on (a higher index)
        than the one kept: a witness never moves backwards. Unknown nodes are ignored."""
        ...

    def list_workloads(self, node_id: str = "") -> list[Workload]: ...
    def prune_samples(self, older_than_s: float) -> int: ...
    def count_samples(self) -> int: ...

    # model history
    def list_model_sightings(self, model_prefix: str = "") -> list[ModelSighting]:
        """Workloads seen holding the models whose id starts with ``model_prefix``."""
        ...

    def prune_model_sightings(self, older_than_s: float) -> int: ...

    # alerts: each change enqueues one delivery per sink named, in the same transaction
    def raise_alert(self, spec: AlertSpec, now_s: float, sinks: Sequence[str] = ()) -> Alert:
        """Idempotent by ``spec.dedup_key``: a new or resolved key fires (delivered to
        ``sinks``); an open one only has ``last_seen_s`` (summary, details) refreshed."""
        ...

    def ack_alert(self, alert_id: str, by: str, now_s: float, sinks: Sequence[str] = ()) -> Alert:
        """Acknowledge a firing alert; ``NotFound``, or ``Conflict`` unless it is firing."""
        ...

    def resolve_alert(self, alert_id: str, now_s: float, sinks: Sequence[str] = ()) -> Alert:
        """Resolve an open alert; ``NotFound``, or ``Conflict`` when already resolved."""
        ...

    def get_alert(self, alert_id: str) -> Alert | None: ...
    def list_alerts(self, states: Sequence[AlertState] = (), limit: int = 100) -> list[Alert]:
        """Alerts in ``states`` (all when empty), most recently raised first."""
        ...

    def alert_backlog(self) -> tuple[int, int]:
        """(alerts firing, deliveries not yet delivered)."""
        ...

    def due_deliveries(
        self, now_s: float, limit: int = 100, claim_s: float = 60.0
    ) -> list[AlertDelivery]:
        """Claim due deliveries (each alert's first undelivered change per sink) for
        ``claim_s``, oldest first."""
        ...

    def mark_delivered(self, delivery_id: int, now_s: float) -> None: ...
    def mark_failed(self, delivery_id: int, next_attempt_s: float, error: str) -> None:
        """Count a failed attempt; due again at ``next_attempt_s``."""
        ...

    def prune_alert_deliveries(self, older_than_s: float) -> int:
        """Forget deliveries delivered before ``older_than_s``."""
        ...

    # corrections
    def create_correction(
        self,
        spec: CorrectionSpec,
        state: CorrectionState,
        now_s: float,
        *,
        spec_bytes: bytes | None = None,
        signatures: Sequence[SignatureRecord] = (),
        approvals_required: int = 0,
    ) -> None:
        """Record a correction with the exact spec bytes its signatures cover."""
        ...

    def add_signature(self, correction_id: str, signature: SignatureRecord) -> None: ...
    def spec_bytes(self, correction_id: str) -> bytes: ...
    def get_correction(self, correction_id: str) -> Correction | None: ...
    def list_corrections(self, limit: int = 100) -> list[Correction]: ...
    def list_open_corrections(self) -> list[Correction]: ...
    def correction_backlog(self) -> tuple[int, int]:
        """(corrections waiting for approvals, unreachable targets of open corrections)."""
        ...

    def expired_open_corrections(self, now_s: float) -> list[str]:
        """Ids of corrections not yet settled (proposed, approved, dispatched) whose expiry is
        at or before ``now_s``, soonest first."""
        ...

    def set_correction_state(
        self,
        correction_id: str,
        state: CorrectionState,
        message: str,
        now_s: float,
        completed: bool = False,
    ) -> None: ...
    def add_target(self, correction_id: str, node_id: str, state: TargetState, now_s: float) -> int:
        """Record a target and assign the node's next command sequence number (returned)."""
        ...

    def add_targets(
        self, correction_id: str, targets: Sequence[NewTarget], now_s: float
    ) -> dict[str, int]:
        """Record (node, state, message) targets in one transaction; each node's sequence."""
        ...

    def get_target(self, correction_id: str, node_id: str) -> TargetResult | None: ...
    def record_acks(
        self, acks: Sequence[tuple[str, CommandAck]], now_s: float
    ) -> list[tuple[str, CommandAck]]:
        """Apply (node, ack) pairs with their audit entries in one transaction; the ones that
        changed something (unknown targets, repeats and acks for a target whose outcome is
        final, audited as ``ack.ignored``, are left out: ``store.acks``)."""
        ...

    def target_states(self, correction_id: str) -> dict[str, TargetState]: ...
    def update_target(
        self,
        correction_id: str,
        node_id: str,
        state: TargetState,
        *,
        message: str,
        outcomes: Sequence[WorkloadOutcome],
        now_s: float,
        only_if: TargetState | None = None,
    ) -> TargetResult | None:
        """Set a target's state (with ``only_if``: only while it is in that state); None if
        there is no such target or it was not in ``only_if``."""
        ...

    def pending_commands(
        self, node_id: str, after_sequence: int, now_s: float
    ) -> list[PendingCommand]:
        """Unacknowledged, unexpired commands for a node with a sequence above the given one
        (the controller asks with 0 when an agent connects: every one of them)."""
        ...

    def pending_for_correction(self, correction_id: str, now_s: float) -> list[PendingCommand]:
        """The correction's unacknowledged commands (one per target), if it has not expired."""
        ...

    # audit chain (hash-chained; append before acting)
    def append_audit(
        self, *, ts: float, actor: str, action: str, subject: str, details: dict[str, Any]
    ) -> AuditEntry: ...
    def list_audit(self, after_seq: int = 0, limit: int = 0) -> list[AuditEntry]: ...
    def audit_head(self) -> AuditHead:
        """The chain's newest entry's index and hash (``AuditHead()`` for an empty chain)."""
        ...

    # incidents: corrections name one in their spec (copied to an indexed column)
    def open_incident(self, incident: Incident) -> bool:
        """Store a new open incident; False (nothing changed) when its id exists already."""
        ...

    def get_incident(self, incident_id: str) -> Incident | None: ...
    def list_incidents(self, open_only: bool = False, limit: int = 100) -> list[Incident]:
        """Incidents, most recently opened first."""
        ...

    def close_incident(self, incident_id: str, by: str, summary: str, now_s: float) -> Incident:
        """Close an open incident; ``NotFound``, or ``Conflict`` when closed already."""
        ...

    def incident_corrections(self, incident_id: str) -> list[Correction]:
        """The corrections naming the incident and the resumes undoing them, oldest first."""
        ...

    def incident_alerts(self, incident_id: str) -> list[Alert]:
        """The alerts whose details name the incident, oldest first."""
        ...

    def audit_about(self, subjects: Sequence[str]) -> list[AuditEntry]:
        """The audit entries about any of ``subjects``, oldest first."""
        ...

    # enrolment and certificates
    # policies: every change a version (core.policies)
    def add_policy_version(self, version: PolicyVersion) -> int:
        """Store the next version of a policy; the number it got."""
        ...

    def add_policy_signature(self, name: str, version: int, signature: SignatureRecord) -> None: ...

    def activate_policy_version(self, name: str, version: int, now_s: float) -> None: ...
    def list_policy_versions(
        self, name: str = "", states: Sequence[PolicyState] = ()
    ) -> list[PolicyVersion]: ...

    def add_enrolment_token(
        self, token_hash: str, node_id: str, now_s: float, expires_at_s: float
    ) -> None: ...
    def use_enrolment_token(self, token_hash: str, node_id: str, now_s: float) -> bool: ...
    def record_certificate(
        self, serial: str, node_id: str, issued_at_s: float, not_after_s: float
    ) -> None: ...
    def revoke_node(self, node_id: str, now_s: float, reason: str) -> int: ...
    def revoked_before(self, node_id: str) -> float | None: ...
    def certificate_issued_at(self, serial: str) -> float | None: ...
