"""The control API (CLI, operator): listings, corrections, approvals, watching.

Backstop errors map to gRPC status codes in one place
(:func:`backstop.controller.rpc_errors.status_for`), each with a message that says what to do.
The policy calls come from :class:`~backstop.controller.policy_api.PolicyCalls`, the alert
and incident calls from :mod:`~backstop.controller.alert_api` and
:mod:`~backstop.controller.incident_api`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from backstop.api.v1 import control_pb2, control_pb2_grpc, types_pb2
from backstop.controller import fleet_models
from backstop.controller.alert_api import AlertCalls
from backstop.controller.alerts.desk import AlertDesk
from backstop.controller.alerts.dispatcher import AlertDispatcher
from backstop.controller.authz import Caller, Refused
from backstop.controller.corrections import CorrectionsEngine, CreateRequest
from backstop.controller.incident_api import IncidentCalls
from backstop.controller.incident_book import IncidentBook
from backstop.controller.policy_api import PolicyCalls
from backstop.controller.policy_book import PolicyBook
from backstop.controller.preview import preview
from backstop.controller.refusals import RefusalLog, actor_of, peer_of
from backstop.controller.rpc_errors import rpc, status_for
from backstop.controller.store.base import Store
from backstop.core.errors import (
    BackstopError,
    InvalidInput,
    NotFound,
)
from backstop.core.models import Correction, Workload
from backstop.core.scope import parse_model_hash
from backstop.security.identities import Role
from backstop.security.peers import new_enrolment_token
from backstop.wire import checks, convert, correction_convert, fleet_convert

log = logging.getLogger(__name__)

DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 10_000
DEFAULT_TOKEN_TTL_S = 3600.0
MAX_TOKEN_TTL_S = 7 * 24 * 3600.0

T = TypeVar("T")


class ControlService(
    PolicyCalls,
    AlertCalls,
    IncidentCalls,
    control_pb2_grpc.ControlServiceServicer,  # type: ignore[misc]
):
    def __init__(
        self,
        store: Store,
        engine: CorrectionsEngine,
        refusals: RefusalLog | None = None,
        *,
        alerts: AlertDesk | None = None,
        on_policy_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._engine = engine
        self._authz = engine.authz
        self._refusals = refusals if refusals is not None else RefusalLog(engine.records.audit)
        self._audit = engine.records.audit
        self._alerts = alerts if alerts is not None else AlertDesk(AlertDispatcher(store, []))
        self._incidents = IncidentBook(store, engine.records)
        self._policies = PolicyBook(
            store, engine.authz, engine.records.audit, on_change=on_policy_change
        )

    def _identify(self, context: Any, what: str, claimed: str = "") -> Caller:
        """The caller; a refusal is audited (aggregated) under their certificate's name."""
        try:
            return self._authz.caller(context, claimed)
        except Refused as exc:
            self._refused(context, what, exc, claimed)
            raise

    def _caller(self, context: Any, role: Role, what: str, claimed: str = "") -> Caller:
        caller = self._identify(context, what, claimed)
        try:
            self._authz.require(caller, role, what)
        except Refused as exc:
            self._refused(context, what, exc, claimed)
            raise
        self._refusals.settle(caller.name)
        return caller

    def admit_viewer(self, what: str) -> Callable[[Any], Caller]:
        """A check for another service on this port: the caller of ``context`` if a viewer may
        do ``what``, else :class:`Refused` (audited like a refused control call)."""
        return lambda context: self._caller(context, Role.VIEWER, what)

    def _refused(self, context: Any, what: str, exc: Refused, claimed: str) -> None:
        actor = actor_of(context, claimed)
        self._refusals.refuse(
            actor,
            "request.refused",
            what,
            refusal=exc.refusal,
            reason=exc.message,
            peer=peer_of(context),
            **({"claimed": claimed} if claimed and claimed != actor else {}),
        )

    def _out(self, correction: Correction) -> types_pb2.Correction:
        """A correction as returned, with the audit head now (for the caller to witness)."""
        msg = correction_convert.correction_to_pb(correction)
        msg.audit_head.CopyFrom(convert.audit_head_to_pb(self._store.audit_head()))
        return msg

    def _create_signed(
        self, signed: types_pb2.SignedCorrection, context: Any, what: str
    ) -> types_pb2.Correction:
        """A correction (a resume too) given as the issuer signed it: spec bytes, signatures."""
        caller = self._caller(context, Role.VIEWER, what)
        correction = self._engine.create_signed(
            signed.spec, correction_convert.signatures_from_pb(signed.signatures), caller
        )
        return self._out(correction)

    @rpc
    async def ListNodes(self, request: Any, context: Any) -> control_pb2.ListNodesResponse:
        self._caller(context, Role.VIEWER, "listing nodes")
        nodes = []
        unattributed: dict[str, int] = {}
        for w in self._store.list_workloads():
            if w.unattributed:
                unattributed[w.node_id] = unattributed.get(w.node_id, 0) + 1
        for r in self._store.list_nodes():
            here = self._engine.connected(r.info.node_id)
            # a node is also connected when another live replica holds its stream
            elsewhere = r.connected and r.replica not in ("", self._engine.replica_id)
            msg = convert.node_to_pb(
                r.info,
                connected=here or elsewhere,
                last_seen_s=r.last_seen_s,
                workload_count=r.workload_count,
                replica=self._engine.replica_id if here else r.replica if elsewhere else "",
            )
            msg.witnessed_audit_head.CopyFrom(convert.audit_head_to_pb(r.witnessed_audit_head))
            msg.journal_head.CopyFrom(convert.audit_head_to_pb(r.journal_head))
            msg.unattributed_count = unattributed.get(r.info.node_id, 0)
            nodes.append(msg)
        return control_pb2.ListNodesResponse(nodes=nodes)

    @rpc
    async def ListWorkloads(
        self, request: control_pb2.ListWorkloadsRequest, context: Any
    ) -> control_pb2.ListWorkloadsResponse:
        self._caller(context, Role.VIEWER, "listing workloads")
        if request.node_id and self._store.get_node(request.node_id) is None:
            raise NotFound(f"unknown node {request.node_id!r}; see `backstop nodes`")
        workloads = self._store.list_workloads(request.node_id)
        if request.model_id:
            prefix = parse_model_hash(request.model_id)
            workloads = [w for w in workloads if _holds_model(w, prefix)]
        return control_pb2.ListWorkloadsResponse(
            workloads=[convert.workload_to_pb(w) for w in workloads]
        )

    @rpc
    async def ListModels(
        self, request: control_pb2.ListModelsRequest, context: Any
    ) -> control_pb2.ListModelsResponse:
        self._caller(context, Role.VIEWER, "listing models")
        prefix = parse_model_hash(request.model_id) if request.model_id else ""
        workloads = [w for w in self._store.list_workloads() if _holds_model(w, prefix)]
        sightings = self._store.list_model_sightings(prefix)
        models = fleet_models.summarize(workloads, sightings)
        if prefix and not models:
            raise NotFound(f"no model {prefix!r} has been seen; see `backstop models`")
        if prefix and len(models) > 1:
            raise InvalidInput(
                f"model prefix {prefix!r} matches {len(models)} models; give more digits"
            )
        history = fleet_models.history(workloads, sightings) if prefix else []
        return control_pb2.ListModelsResponse(
            models=[fleet_convert.summary_to_pb(m) for m in models],
            history=[fleet_convert.sighting_to_pb(s) for s in history],
        )

    @rpc
    async def ListCorrections(
        self, request: control_pb2.ListCorrectionsRequest, context: Any
    ) -> control_pb2.ListCorrectionsResponse:
        self._caller(context, Role.VIEWER, "listing corrections")
        limit = min(request.limit or DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)
        head = convert.audit_head_to_pb(self._store.audit_head())
        corrections = [
            correction_convert.correction_to_pb(c) for c in self._store.list_corrections(limit)
        ]
        for msg in corrections:
            msg.audit_head.CopyFrom(head)
        return control_pb2.ListCorrectionsResponse(corrections=corrections)

    @rpc
    async def CreateCorrection(
        self, request: control_pb2.CreateCorrectionRequest, context: Any
    ) -> types_pb2.Correction:
        if request.HasField("signed"):
            return self._create_signed(request.signed, context, "creating a correction")
        caller = self._caller(context, Role.VIEWER, "creating a correction", request.issuer)
        action = correction_convert.action_from_pb(request.action)
        if request.ttl_s < 0:
            raise InvalidInput("ttl must not be negative")
        correction = self._engine.create(
            CreateRequest(
                action=action,
                scope=correction_convert.scope_from_pb(request.scope),
                reason=request.reason,
                issuer=request.issuer,
                ttl_s=request.ttl_s,
                params=correction_convert.params_from_pb(request.params),
                incident=checks.text(request.incident, "incident", 64),
            ),
            caller,
        )
        return self._out(correction)

    @rpc
    async def ApproveCorrection(
        self, request: control_pb2.ApproveCorrectionRequest, context: Any
    ) -> types_pb2.Correction:
        caller = self._caller(context, Role.VIEWER, "approving", request.approver)
        signature = (
            correction_convert.signature_from_pb(request.signature)
            if request.HasField("signature")
            else None
        )
        correction = self._engine.approve(request.correction_id, signature, caller)
        return self._out(correction)

    @rpc
    async def ResumeCorrection(
        self, request: control_pb2.ResumeCorrectionRequest, context: Any
    ) -> types_pb2.Correction:
        if request.HasField("signed"):
            return self._create_signed(request.signed, context, "resuming")
        if not request.issuer:
            raise InvalidInput("the issuer is missing")
        caller = self._caller(context, Role.VIEWER, "resuming", request.issuer)
        correction = self._engine.resume(
            request.correction_id,
            request.reason,
            request.issuer,
            caller,
            checks.text(request.incident, "incident", 64),
        )
        return self._out(correction)

    @rpc
    async def GetCorrection(
        self, request: control_pb2.GetCorrectionRequest, context: Any
    ) -> types_pb2.Correction:
        self._caller(context, Role.VIEWER, "reading a correction")
        msg = self._out(self._engine.get(request.correction_id))
        msg.signed_spec = self._store.spec_bytes(request.correction_id)
        return msg

    async def WatchCorrection(
        self, request: control_pb2.GetCorrectionRequest, context: Any
    ) -> AsyncIterator[types_pb2.Correction]:
        try:
            self._caller(context, Role.VIEWER, "watching a correction")
            async for correction in self._engine.watch(request.correction_id):
                yield self._out(correction)
        except BackstopError as exc:
            await context.abort(status_for(exc), exc.message)

    async def ExportAudit(
        self, request: control_pb2.ExportAuditRequest, context: Any
    ) -> AsyncIterator[control_pb2.AuditEntry]:
        try:
            self._caller(context, Role.VIEWER, "reading the audit log")
        except BackstopError as exc:
            await context.abort(status_for(exc), exc.message)
        after, left = request.after_seq, request.limit or None
        while left is None or left > 0:
            batch = self._store.list_audit(after, min(left or 1000, 1000))
            if not batch:
                return
            for entry in batch:
                yield control_pb2.AuditEntry(
                    seq=entry.seq,
                    ts=entry.ts,
                    actor=entry.actor,
                    action=entry.action,
                    subject=entry.subject,
                    details_json=json.dumps(entry.details, sort_keys=True),
                    prev_hash=entry.prev_hash,
                    hash=entry.hash,
                )
            after = batch[-1].seq
            if left is not None:
                left -= len(batch)

    @rpc
    async def PreviewScope(
        self, request: control_pb2.PreviewScopeRequest, context: Any
    ) -> control_pb2.PreviewScopeResponse:
        self._caller(context, Role.VIEWER, "previewing a scope")
        found = preview(self._store, correction_convert.scope_from_pb(request.scope), request.limit)
        return control_pb2.PreviewScopeResponse(
            node_ids=list(found.node_ids),
            workload_count=found.workload_count,
            workloads=[convert.workload_to_pb(w) for w in found.workloads],
        )

    @rpc
    async def CreateEnrolmentToken(
        self, request: control_pb2.CreateEnrolmentTokenRequest, context: Any
    ) -> control_pb2.CreateEnrolmentTokenResponse:
        caller = self._caller(context, Role.ADMIN, "creating an enrolment token")
        node_id = checks.node_id_text(request.node_id)
        ttl = request.ttl_s or DEFAULT_TOKEN_TTL_S
        if not 0 < ttl <= MAX_TOKEN_TTL_S:
            raise InvalidInput(f"token ttl must be within (0, {MAX_TOKEN_TTL_S:g}] seconds")
        token, digest = new_enrolment_token()
        now = time.time()
        self._engine.records.audit(caller.name, "token.create", node_id, expires_at_s=now + ttl)
        self._store.add_enrolment_token(digest, node_id, now, now + ttl)
        return control_pb2.CreateEnrolmentTokenResponse(token=token, expires_at_s=now + ttl)

    @rpc
    async def RevokeNode(
        self, request: control_pb2.RevokeNodeRequest, context: Any
    ) -> control_pb2.RevokeNodeResponse:
        caller = self._caller(context, Role.ADMIN, "revoking a node")
        node_id = checks.node_id_text(request.node_id)
        self._engine.records.audit(caller.name, "node.revoke", node_id, reason=request.reason)
        count = self._store.revoke_node(node_id, time.time(), request.reason)
        self._engine.delivery.disconnect(node_id, "the node's certificate was revoked")
        listed = self._authz.revoke_certificates(node_id, "agent")
        if listed is None:
            log.warning(
                "no CA key here: the node's certificates are refused by this store only; "
                "add them to the CA's revocation list where the key is (backstop pki revoke --dir)",
                extra={"node": node_id},
            )
        return control_pb2.RevokeNodeResponse(certificates_revoked=max(count, listed or 0))

    @rpc
    async def GetAuditHead(self, request: Any, context: Any) -> types_pb2.AuditHead:
        self._caller(context, Role.VIEWER, "reading the audit head")
        return convert.audit_head_to_pb(self._store.audit_head())

    @rpc
    async def WhoAmI(self, request: Any, context: Any) -> control_pb2.WhoAmIResponse:
        caller = self._identify(context, "asking who you are")
        return control_pb2.WhoAmIResponse(
            name=caller.name, role=caller.role.value, authenticated=caller.authenticated
        )


def _holds_model(workload: Workload, prefix: str) -> bool:
    """Whether the workload holds an identified model whose id starts with ``prefix``."""
    model = workload.fingerprint.model
    return model is not None and bool(model.model_id) and model.model_id.startswith(prefix)
