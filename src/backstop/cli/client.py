"""A synchronous client of the controller's control API, with Backstop errors.

gRPC failures become :mod:`backstop.core.errors` exceptions whose message says what to do.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from backstop.api.v1 import control_pb2, control_pb2_grpc, types_pb2
from backstop.cli.heads import HeadMemory
from backstop.core.alerts import Alert
from backstop.core.errors import (
    BackstopError,
    InvalidInput,
    Unavailable,
    error_for_status,
)
from backstop.core.models import (
    Action,
    ActionParams,
    AuditHead,
    Scope,
    SignatureRecord,
    Workload,
)
from backstop.core.netaddr import require_loopback_for_plaintext, split_addresses
from backstop.core.policies import PolicyVersion
from backstop.security.audit import AuditEntry
from backstop.security.tls import channel_credentials
from backstop.wire import convert, correction_convert, incident_convert, policy_convert
from backstop.wire.alert_convert import alert_from_pb
from backstop.wire.incident_convert import ReceivedIncident, ReceivedTimeline
from backstop.wire.json_form import message_json
from backstop.wire.received import (
    JsonObject,
    ReceivedCorrection,
    ReceivedNode,
    ReceivedWorkload,
    received_correction,
    received_node,
    received_workload,
)
from backstop.wire.received_fleet import (
    ReceivedModel,
    ReceivedSighting,
    received_model,
    received_sighting,
)


class WatchDeadline(BackstopError):
    """A watch reached its deadline before the correction finished."""


@dataclass(frozen=True, slots=True)
class NodeHeads:
    """The heads the controller lists for a node; a malformed one is the empty head."""

    journal: AuditHead
    """The agent journal's head the controller recorded."""
    witnessed: AuditHead
    """The controller's audit head the node reports having received."""


@dataclass(frozen=True, slots=True)
class Preview:
    """The targets the controller resolves a scope to now (PreviewScope)."""

    node_ids: tuple[str, ...]
    workloads: tuple[Workload, ...]
    """At most the limit asked for; ``workload_count`` is the whole count."""
    workload_count: int
    json_data: JsonObject = field(default_factory=dict)
    """The response as received, for ``--dry-run -o json``."""


class ControllerClient:
    """``tls_dir`` holds ca.crt, client.crt and client.key; without it only plaintext to a
    loopback controller is possible, and only when ``insecure`` says so. With ``heads``,
    every audit head a call returns is remembered for ``address`` (the CLI's witness)."""

    def __init__(
        self,
        address: str,
        *,
        tls_dir: Path | None = None,
        insecure: bool = False,
        timeout_s: float = 10.0,
        heads: HeadMemory | None = None,
    ) -> None:
        self.controller = address
        """The controller as given (all replicas): the key its witnessed head is kept under."""
        self.heads = heads
        self._addresses = split_addresses(address)
        self.address = self._addresses[0]
        self.timeout_s = timeout_s
        self._creds: grpc.ChannelCredentials | None = None
        if tls_dir is not None:
            files = [tls_dir / n for n in ("ca.crt", "client.crt", "client.key")]
            missing = [str(f) for f in files if not f.is_file()]
            if missing:
                raise InvalidInput(f"TLS files missing: {', '.join(missing)}")
            self._creds = channel_credentials(*files)
        elif insecure:
            require_loopback_for_plaintext(address)
        else:
            raise InvalidInput(
                "no TLS identity: pass --tls-dir (ca.crt, client.crt, client.key) or set "
                "BACKSTOP_TLS_DIR; for a plaintext loopback controller in open mode, --insecure"
            )
        self._open(self.address)

    def _open(self, address: str) -> None:
        self.address = address
        self._channel = (
            grpc.secure_channel(address, self._creds)
            if self._creds is not None
            else grpc.insecure_channel(address)
        )
        self._stub = control_pb2_grpc.ControlServiceStub(self._channel)

    def _fail_over(self) -> bool:
        """Move to the next controller replica given; False when every one was tried."""
        index = self._addresses.index(self.address) + 1
        if index >= len(self._addresses):
            return False
        self._channel.close()
        self._open(self._addresses[index])
        return True

    def reconnect(self) -> str:
        """A fresh channel to the next controller given (the same one when only one is):
        after a controller died mid-watch. Returns the address now used."""
        index = (self._addresses.index(self.address) + 1) % len(self._addresses)
        self._channel.close()
        self._open(self._addresses[index])
        return self.address

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> ControllerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _error(self, exc: grpc.RpcError) -> BackstopError:
        code = exc.code()
        details = exc.details() or code.name
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return Unavailable(
                f"cannot reach the controller at {self.address} ({details}); is "
                "`backstop controller serve` running? Set --controller or BACKSTOP_CONTROLLER."
            )
        return error_for_status(code.name)(details)

    def _call(self, method: str, request: Any) -> Any:
        """One call; a replica that cannot be reached hands over to the next one given."""
        while True:
            try:
                result = getattr(self._stub, method)(request, timeout=self.timeout_s)
            except grpc.RpcError as exc:
                if exc.code() is grpc.StatusCode.UNAVAILABLE and self._fail_over():
                    continue
                raise self._error(exc) from exc
            self._witness(result)
            return result

    def _witness(self, result: Any) -> None:
        """Remember the audit head a result carries (a malformed one is ignored)."""
        if self.heads is None:
            return
        if isinstance(result, types_pb2.AuditHead):
            found = [result]
        elif isinstance(result, types_pb2.Correction):
            found = [result.audit_head]
        elif isinstance(result, control_pb2.ListCorrectionsResponse) and result.corrections:
            # one read of the head for the whole listing: every correction carries the same
            found = [max((c.audit_head for c in result.corrections), key=lambda h: h.seq)]
        else:
            return
        for msg in found:
            try:
                self.remember(convert.audit_head_from_pb(msg))
            except InvalidInput:
                continue

    def remember(self, head: AuditHead) -> None:
        if self.heads is not None:
            self.heads.remember(self.controller, head)

    def audit_head(self) -> AuditHead:
        """The controller's audit head now (remembered as a witness)."""
        msg = self._call("GetAuditHead", control_pb2.GetAuditHeadRequest())
        return convert.audit_head_from_pb(msg)

    def _nodes(self) -> list[types_pb2.Node]:
        return list(self._call("ListNodes", control_pb2.ListNodesRequest()).nodes)

    def list_nodes(self) -> list[ReceivedNode]:
        return [received_node(n) for n in self._nodes()]

    def node_heads(self) -> dict[str, NodeHeads]:
        """Every node's recorded journal head and witnessed audit head, by node id."""
        return {
            n.node_id: NodeHeads(_head(n.journal_head), _head(n.witnessed_audit_head))
            for n in self._nodes()
        }

    def list_workloads(self, node_id: str = "", model_id: str = "") -> list[ReceivedWorkload]:
        request = control_pb2.ListWorkloadsRequest(node_id=node_id, model_id=model_id)
        return [received_workload(w) for w in self._call("ListWorkloads", request).workloads]

    def list_models(self, model_id: str = "") -> tuple[list[ReceivedModel], list[ReceivedSighting]]:
        """Every identified model; with ``model_id`` (a prefix), that one and its history."""
        answer = self._call("ListModels", control_pb2.ListModelsRequest(model_id=model_id))
        return (
            [received_model(m) for m in answer.models],
            [received_sighting(s) for s in answer.history],
        )

    def list_corrections(self, limit: int = 0) -> list[ReceivedCorrection]:
        request = control_pb2.ListCorrectionsRequest(limit=limit)
        found = self._call("ListCorrections", request).corrections
        return [received_correction(c) for c in found]

    def _correction(self, method: str, request: Any) -> ReceivedCorrection:
        """One call that answers a correction, converted as it arrives."""
        return received_correction(self._call(method, request))

    def create(
        self,
        action: Action,
        scope: Scope,
        *,
        reason: str,
        issuer: str,
        ttl_s: float,
        params: ActionParams,
        incident: str = "",
    ) -> ReceivedCorrection:
        """An unsigned correction: the controller writes and signs its spec."""
        request = control_pb2.CreateCorrectionRequest(
            action=correction_convert.action_to_pb(action),
            scope=correction_convert.scope_to_pb(scope),
            reason=reason,
            issuer=issuer,
            ttl_s=ttl_s,
            params=correction_convert.params_to_pb(params),
            incident=incident,
        )
        return self._correction("CreateCorrection", request)

    # -- alerts ------------------------------------------------------------------------------

    def list_alerts(self, include_resolved: bool = False, limit: int = 0) -> list[Alert]:
        request = control_pb2.ListAlertsRequest(all=include_resolved, limit=limit)
        return [alert_from_pb(m) for m in self._call("ListAlerts", request).alerts]

    def ack_alert(self, alert_id: str, by: str) -> Alert:
        request = control_pb2.AckAlertRequest(alert_id=alert_id, requested_by=by)
        return alert_from_pb(self._call("AckAlert", request))

    # -- incidents ---------------------------------------------------------------------------

    def open_incident(self, title: str, severity: str, by: str) -> ReceivedIncident:
        msg = control_pb2.OpenIncidentRequest(title=title, severity=severity, requested_by=by)
        return incident_convert.received_incident(self._call("OpenIncident", msg))

    def list_incidents(self, open_only: bool, limit: int) -> list[ReceivedIncident]:
        msg = control_pb2.ListIncidentsRequest(open_only=open_only, limit=limit)
        return incident_convert.received_incidents(self._call("ListIncidents", msg))

    def incident(self, incident_id: str) -> ReceivedTimeline:
        msg = control_pb2.GetIncidentRequest(incident_id=incident_id)
        return incident_convert.received_timeline(self._call("GetIncident", msg))

    def close_incident(self, iid: str, summary: str, by: str) -> ReceivedIncident:
        msg = control_pb2.CloseIncidentRequest(incident_id=iid, summary=summary, requested_by=by)
        return incident_convert.received_incident(self._call("CloseIncident", msg))

    # -- policies ----------------------------------------------------------------------------

    def apply_policy(
        self, document: bytes, signatures: Sequence[SignatureRecord], source: str, by: str
    ) -> PolicyVersion:
        request = control_pb2.ApplyPolicyRequest(
            document=document,
            signatures=[correction_convert.signature_to_pb(s) for s in signatures],
            source=source,
            requested_by=by,
        )
        return policy_convert.version_from_pb(self._call("ApplyPolicy", request))

    def approve_policy(
        self, name: str, version: int, signature: SignatureRecord, by: str
    ) -> PolicyVersion:
        request = control_pb2.ApprovePolicyRequest(
            name=name,
            version=version,
            signature=correction_convert.signature_to_pb(signature),
            requested_by=by,
        )
        return policy_convert.version_from_pb(self._call("ApprovePolicy", request))

    def delete_policy(
        self, name: str, digest: str, signatures: Sequence[SignatureRecord], by: str
    ) -> PolicyVersion:
        request = control_pb2.DeletePolicyRequest(
            name=name,
            digest=digest,
            signatures=[correction_convert.signature_to_pb(s) for s in signatures],
            requested_by=by,
        )
        return policy_convert.version_from_pb(self._call("DeletePolicy", request))

    def list_policies(self, name: str = "", include_ended: bool = False) -> list[PolicyVersion]:
        request = control_pb2.ListPoliciesRequest(name=name, include_ended=include_ended)
        return policy_convert.versions_from_pb(self._call("ListPolicies", request).versions)

    def test_policy(self, document: bytes, source: str) -> policy_convert.ReceivedPolicyTest:
        request = control_pb2.TestPolicyRequest(document=document, source=source)
        return policy_convert.test_from_pb(self._call("TestPolicy", request))

    def approve(self, correction_id: str, approver: str) -> ReceivedCorrection:
        request = control_pb2.ApproveCorrectionRequest(
            correction_id=correction_id, approver=approver
        )
        return self._correction("ApproveCorrection", request)

    def resume(self, cid: str, reason: str, issuer: str, incident: str = "") -> ReceivedCorrection:
        request = control_pb2.ResumeCorrectionRequest(
            correction_id=cid, reason=reason, issuer=issuer, incident=incident
        )
        return self._correction("ResumeCorrection", request)

    def get(self, correction_id: str) -> ReceivedCorrection:
        request = control_pb2.GetCorrectionRequest(correction_id=correction_id)
        return self._correction("GetCorrection", request)

    def create_signed(
        self, data: bytes, signatures: Sequence[SignatureRecord]
    ) -> ReceivedCorrection:
        """A correction whose spec bytes ``data`` the operator signed."""
        request = control_pb2.CreateCorrectionRequest(
            signed=correction_convert.signed_correction(data, signatures)
        )
        return self._correction("CreateCorrection", request)

    def resume_signed(
        self, correction_id: str, data: bytes, signatures: Sequence[SignatureRecord]
    ) -> ReceivedCorrection:
        request = control_pb2.ResumeCorrectionRequest(
            correction_id=correction_id,
            signed=correction_convert.signed_correction(data, signatures),
        )
        return self._correction("ResumeCorrection", request)

    def approve_signed(
        self, correction_id: str, approver: str, signature: SignatureRecord
    ) -> ReceivedCorrection:
        request = control_pb2.ApproveCorrectionRequest(
            correction_id=correction_id,
            approver=approver,
            signature=correction_convert.signature_to_pb(signature),
        )
        return self._correction("ApproveCorrection", request)

    def preview(self, scope: Scope, limit: int = 0) -> Preview:
        request = control_pb2.PreviewScopeRequest(
            scope=correction_convert.scope_to_pb(scope), limit=limit
        )
        found = self._call("PreviewScope", request)
        workloads = [received_workload(w) for w in found.workloads]
        return Preview(
            tuple(found.node_ids),
            tuple(w.workload for w in workloads),
            int(found.workload_count),
            {  # each workload as ``workloads -o json`` prints it
                **message_json(found, "ScopePreview"),
                "workloads": [w.json_data for w in workloads],
            },
        )

    def enrolment_token(
        self, node_id: str, ttl_s: float
    ) -> control_pb2.CreateEnrolmentTokenResponse:
        request = control_pb2.CreateEnrolmentTokenRequest(node_id=node_id, ttl_s=ttl_s)
        response: control_pb2.CreateEnrolmentTokenResponse = self._call(
            "CreateEnrolmentToken", request
        )
        return response

    def revoke(self, node_id: str, reason: str) -> int:
        request = control_pb2.RevokeNodeRequest(node_id=node_id, reason=reason)
        return int(self._call("RevokeNode", request).certificates_revoked)

    def whoami(self) -> control_pb2.WhoAmIResponse:
        response: control_pb2.WhoAmIResponse = self._call("WhoAmI", control_pb2.WhoAmIRequest())
        return response

    def audit(self, after_seq: int = 0) -> Iterator[AuditEntry]:
        request = control_pb2.ExportAuditRequest(after_seq=after_seq)
        try:
            for msg in self._stub.ExportAudit(request, timeout=max(self.timeout_s, 60.0)):
                yield _entry(msg)
        except grpc.RpcError as exc:
            raise self._error(exc) from exc

    def watch(self, correction_id: str, timeout_s: float) -> Iterator[ReceivedCorrection]:
        request = control_pb2.GetCorrectionRequest(correction_id=correction_id)
        try:
            for correction in self._stub.WatchCorrection(request, timeout=timeout_s):
                self._witness(correction)
                yield received_correction(correction)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise WatchDeadline(
                    f"{correction_id} did not finish within {timeout_s:g} s; "
                    f"see `backstop status {correction_id}`"
                ) from exc
            raise self._error(exc) from exc


def _head(msg: types_pb2.AuditHead) -> AuditHead:
    try:
        return convert.audit_head_from_pb(msg)
    except InvalidInput:
        return AuditHead()


def _entry(msg: control_pb2.AuditEntry) -> AuditEntry:
    return AuditEntry(
        seq=msg.seq,
        ts=msg.ts,
        actor=msg.actor,
        action=msg.action,
        subject=msg.subject,
        details=json.loads(msg.details_json),
        prev_hash=msg.prev_hash,
        hash=msg.hash,
    )
