"""Assembly of the controller: store, engine, gRPC services, health, metrics, housekeeping."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from backstop.api.v1 import agent_pb2_grpc, control_pb2_grpc, enrolment_pb2_grpc
from backstop.controller import metrics
from backstop.controller.alerts.desk import AlertDesk
from backstop.controller.alerts.dispatcher import AlertDispatcher
from backstop.controller.alerts.sinks import sinks_from_settings
from backstop.controller.authz import Authorizer
from backstop.controller.control_api import ControlService
from backstop.controller.corrections import CorrectionsEngine
from backstop.controller.enrolment import EnrolmentService
from backstop.controller.fanout import fanout_for
from backstop.controller.gateway import AgentGateway
from backstop.controller.liveness import Liveness
from backstop.controller.message_limit import MessageLimit, transport_limit
from backstop.controller.policy_watch import PolicyWatch
from backstop.controller.reflection import add_reflection
from backstop.controller.refusals import RefusalLog
from backstop.controller.store import Store, open_store
from backstop.core.errors import InvalidInput
from backstop.core.listen import EXCLUSIVE, cannot_listen
from backstop.core.netaddr import require_loopback_for_plaintext, split_host_port
from backstop.core.settings import ControllerSettings
from backstop.security.crl import CRL_FILE, RevocationList
from backstop.security.identities import TrustPolicyFile
from backstop.security.pki import CertificateAuthority
from backstop.security.tls import server_credentials
from backstop.telemetry import sd_notify
from backstop.telemetry.endpoint import TelemetryServer

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL_S = 0.5
PRUNE_INTERVAL_S = 300.0
BACKLOG_INTERVAL_S = 10.0
"""How often the approval and delivery backlog gauges are counted afresh."""
DELIVERED_KEPT_S = 7 * 24 * 3600.0
"""Delivered alert changes are forgotten after this long (the alerts themselves are kept)."""
HEARTBEAT_INTERVAL_S = 2.0
REPLICA_STALE_S = 10.0
"""A replica silent this long is taken for dead: the nodes it held count as disconnected."""
SERVICE_NAMES = ("backstop.v1.AgentGateway", "backstop.v1.ControlService")


def grpc_options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [
        EXCLUSIVE,  # a second controller on a busy port fails instead of sharing it
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


class ControllerServer:
    """One controller replica. ``await start()``, then ``await wait()`` or ``await stop()``."""

    def __init__(self, settings: ControllerSettings, store: Store | None = None) -> None:
        _check_security_settings(settings)
        self.settings = settings
        self.controller_id = settings.controller_id or f"{socket.gethostname()}:{os.getpid()}"
        if not self.controller_id.isprintable() or any(c.isspace() for c in self.controller_id):
            raise InvalidInput(f"replica id {self.controller_id!r} must be printable, no spaces")
        self.store = store if store is not None else open_store(settings.store_url)
        policy = TrustPolicyFile(settings.trust_policy) if settings.trust_policy else None
        tls = settings.tls_dir
        self.revocations = (
            RevocationList(settings.crl or tls / CRL_FILE, tls / "ca.crt") if tls else None
        )
        self.fanout = fanout_for(self.store, self.controller_id)
        self.engine = CorrectionsEngine(
            self.store,
            settings,
            authz=Authorizer(policy, self.revocations, ca_dir=tls),
            replica_id=self.controller_id,
            fanout=self.fanout,
        )
        self.refusals = RefusalLog(self.engine.records.audit)
        self.alert_dispatcher = AlertDispatcher(self.store, sinks_from_settings(settings))
        self.alerts = AlertDesk(self.alert_dispatcher)
        """Where policy evaluation and the alert RPCs raise, acknowledge and resolve alerts."""
        self.policy_watch = PolicyWatch(
            self.store,
            self.engine.policy_starts,
            self.alerts.raise_alert,
        )
        self._gateway = AgentGateway(
            self.store,
            self.engine,
            settings,
            self.controller_id,
            mutual_tls=settings.tls_dir is not None,
            refusals=self.refusals,
            on_reports=self.policy_watch.observe,
        )
        # a change of the policies in force sends the agents their node policies anew (bound
        # to the gateway, not to this server: no reference cycle keeps the server alive)
        self.policy_watch.on_reload = self._gateway.push_policies
        self._enrol_server: grpc.aio.Server | None = None
        self.enrol_port = 0
        # the transport's ceiling is higher; MessageLimit refuses (and audits) what is over
        self._server = grpc.aio.server(
            options=grpc_options(transport_limit(settings.max_message_bytes)),
            interceptors=[MessageLimit(settings.max_message_bytes, self.refusals)],
        )
        self._health = health.aio.HealthServicer()
        self._liveness = Liveness(self.store.schema_version)
        self._tasks: list[asyncio.Task[None]] = []
        self._telemetry: TelemetryServer | None = None
        self.port = 0

    async def start(self) -> int:
        """Bind every port first (a busy one stops the start before anything changes), then
        recover the store's state and serve."""
        tls = self.settings.tls_dir
        agent_pb2_grpc.add_AgentGatewayServicer_to_server(self._gateway, self._server)
        control = ControlService(
            self.store,
            self.engine,
            self.refusals,
            alerts=self.alerts,
            on_policy_change=self.policy_watch.changed,
        )
        control_pb2_grpc.add_ControlServiceServicer_to_server(control, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        if self.settings.reflection:  # same port and TLS; admitted as a viewer's call
            add_reflection(self._server, SERVICE_NAMES, control.admit_viewer("server reflection"))
        if tls is None:
            log.warning(
                "OPEN MODE: plaintext on loopback, no trust policy; every caller is an admin "
                "and corrections are unsigned. Never use this beyond a development machine."
            )
            creds = None
        else:
            creds = server_credentials(
                tls / "controller.crt",
                tls / "controller.key",
                tls / "ca.crt",
                require_client_auth=True,
            )
        self.port = _add_port(self._server, self.settings.listen, creds, "agents and the CLI")
        if self.settings.enrol_listen:
            self._enrol_server = self._bind_enrolment()
        if self.settings.metrics_listen:
            self._telemetry = TelemetryServer(
                self.settings.metrics_listen, self._healthy, alive=self._liveness.check_loop
            )
        if self.fanout.shared:  # other replicas keep their nodes; dead ones' are released
            self.store.heartbeat(self.controller_id, time.time(), REPLICA_STALE_S)
        else:
            self.store.mark_all_disconnected()
        self.engine.recover()
        await self._server.start()
        if self._enrol_server is not None:
            await self._enrol_server.start()
            log.info("enrolment listening", extra={"port": self.enrol_port})
        for name in ("", *SERVICE_NAMES):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if self._telemetry is not None:
            self._telemetry.start()
        self._tasks.append(asyncio.create_task(self._housekeeping()))
        self._tasks.append(asyncio.create_task(self._liveness.beat()))
        if self.alert_dispatcher.sinks:
            self._tasks.append(asyncio.create_task(self.alert_dispatcher.run()))
        delivery = self.engine.delivery
        self._tasks.append(
            asyncio.create_task(self.fanout.run(delivery.on_replica_event, delivery.resync))
        )
        log.info(
            "controller listening",
            extra={"address": self.settings.listen, "port": self.port, "id": self.controller_id},
        )
        return self.port

    def _bind_enrolment(self) -> grpc.aio.Server:
        tls = self.settings.tls_dir
        if tls is None:
            raise InvalidInput("enrolment needs --tls-dir (with ca.key to sign node certificates)")
        server = grpc.aio.server(options=grpc_options(64 * 1024))
        enrolment_pb2_grpc.add_EnrolmentServicer_to_server(
            EnrolmentService(
                self.store, self.engine, CertificateAuthority.load(tls), tls, self.refusals
            ),
            server,
        )
        creds = server_credentials(
            tls / "controller.crt", tls / "controller.key", None, require_client_auth=False
        )
        self.enrol_port = _add_port(server, self.settings.enrol_listen, creds, "enrolment")
        return server

    def _healthy(self) -> tuple[bool, str]:
        return self._liveness.check()

    async def _housekeeping(self) -> None:
        last_prune = last_heartbeat = last_backlog = 0.0
        while True:
            await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)
            try:
                self.engine.check_deadlines()
                self.refusals.flush_due()
                now = time.time()
                if self.fanout.shared and now - last_heartbeat > HEARTBEAT_INTERVAL_S:
                    released = self.store.heartbeat(self.controller_id, now, REPLICA_STALE_S)
                    last_heartbeat = now
                    if released:
                        log.warning(
                            "released the nodes of a replica that stopped",
                            extra={"nodes": released},
                        )
                if now - last_backlog > BACKLOG_INTERVAL_S:
                    awaiting, unreachable = self.store.correction_backlog()
                    metrics.AWAITING_APPROVAL.set(awaiting)
                    metrics.TARGETS_UNREACHABLE.set(unreachable)
                    self.alert_dispatcher.count()
                    last_backlog = now
                if now - last_prune > PRUNE_INTERVAL_S:
                    self.store.prune_samples(now - self.settings.sample_retention_s)
                    self.store.prune_model_sightings(now - self.settings.model_history_s)
                    self.store.prune_alert_deliveries(now - DELIVERED_KEPT_S)
                    last_prune = now
            except Exception:
                log.exception("housekeeping failed; retrying")

    async def wait(self) -> None:
        await self._server.wait_for_termination()

    async def stop(self, grace_s: float = 2.0) -> None:
        for name in ("", *SERVICE_NAMES):
            await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await self._server.stop(grace_s)
            await self._gateway.reports_written()
        finally:  # gRPC's stop raises CancelledError when the serving task was cancelled
            self.refusals.flush_all()
        if self._enrol_server is not None:
            await self._enrol_server.stop(0)
        if self._telemetry is not None:
            self._telemetry.stop()
        self._liveness.close()
        self.store.close()


def _add_port(
    server: grpc.aio.Server,
    address: str,
    credentials: grpc.ServerCredentials | None,
    what: str,
) -> int:
    """Bind ``address`` (exclusively: see :data:`EXCLUSIVE`); the port, or a clear error."""
    split_host_port(address)
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError:  # grpc's "Failed to bind to address"
        port = 0
    if port == 0:
        raise cannot_listen(what, address)
    return int(port)


def _check_security_settings(settings: ControllerSettings) -> None:
    if settings.insecure:
        require_loopback_for_plaintext(settings.listen)
        if settings.tls_dir or settings.trust_policy:
            raise InvalidInput("--insecure cannot be combined with --tls-dir or --trust-policy")
        return
    if settings.tls_dir is None or settings.trust_policy is None:
        raise InvalidInput(
            "the controller needs --tls-dir and --trust-policy (see `backstop pki init`), "
            "or --insecure for plaintext open mode on loopback"
        )
    for name in ("ca.crt", "controller.crt", "controller.key"):
        if not (settings.tls_dir / name).is_file():
            raise InvalidInput(f"{settings.tls_dir / name} is missing (backstop pki issue)")
    if not settings.trust_policy.is_file():
        raise InvalidInput(f"trust policy {settings.trust_policy} does not exist")


async def serve(settings: ControllerSettings, ready_file: Path | None = None) -> None:
    """Run a controller until cancelled (SIGINT/SIGTERM are handled by the caller)."""
    server = ControllerServer(settings)
    try:
        port = await server.start()
    except BaseException:
        with contextlib.suppress(Exception):  # the start's own error is the one to show
            await server.stop(0)
        raise
    if ready_file is not None:
        host = settings.listen.rsplit(":", 1)[0]
        tmp = ready_file.with_suffix(".tmp")
        lines = f"{host}:{port}\n"
        if server.enrol_port:
            lines += f"{settings.enrol_listen.rsplit(':', 1)[0]}:{server.enrol_port}\n"
        tmp.write_text(lines)
        tmp.replace(ready_file)
    status = f"serving on {settings.listen.rsplit(':', 1)[0]}:{port}"
    async with sd_notify.serving(lambda: status):
        try:
            await server.wait()
        finally:
            await server.stop()
