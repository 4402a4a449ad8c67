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

from backstop.api.v1 import agent_pb2_grpc, control_pb2_grpc
from backstop.controller.control_api import ControlService
from backstop.controller.corrections import CorrectionsEngine
from backstop.controller.gateway import AgentGateway
from backstop.controller.store import Store, open_store
from backstop.core.errors import InvalidInput
from backstop.core.netaddr import require_loopback_for_plaintext
from backstop.core.settings import ControllerSettings
from backstop.telemetry.endpoint import TelemetryServer

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL_S = 0.5
PRUNE_INTERVAL_S = 300.0
SERVICE_NAMES = ("backstop.v1.AgentGateway", "backstop.v1.ControlService")


def grpc_options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [
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
        if not settings.insecure_loopback:
            raise InvalidInput(
                "TLS settings are not configured; only plaintext on loopback is available"
            )
        require_loopback_for_plaintext(settings.listen)
        self.settings = settings
        self.controller_id = settings.controller_id or f"{socket.gethostname()}:{os.getpid()}"
        self.store = store if store is not None else open_store(settings.store_url)
        self.engine = CorrectionsEngine(self.store, settings)
        self._server = grpc.aio.server(options=grpc_options(settings.max_message_bytes))
        self._health = health.aio.HealthServicer()
        self._tasks: list[asyncio.Task[None]] = []
        self._telemetry: TelemetryServer | None = None
        self.port = 0

    async def start(self) -> int:
        self.store.mark_all_disconnected()
        self.engine.recover()
        agent_pb2_grpc.add_AgentGatewayServicer_to_server(
            AgentGateway(self.store, self.engine, self.settings, self.controller_id), self._server
        )
        control_pb2_grpc.add_ControlServiceServicer_to_server(
            ControlService(self.store, self.engine), self._server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        self.port = self._server.add_insecure_port(self.settings.listen)
        if self.port == 0:
            raise InvalidInput(f"cannot listen on {self.settings.listen}: address in use?")
        await self._server.start()
        for name in ("", *SERVICE_NAMES):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if self.settings.metrics_listen:
            self._telemetry = TelemetryServer(self.settings.metrics_listen, self._healthy).start()
        self._tasks.append(asyncio.create_task(self._housekeeping()))
        log.info(
            "controller listening",
            extra={"address": self.settings.listen, "port": self.port, "id": self.controller_id},
        )
        return self.port

    def _healthy(self) -> tuple[bool, str]:
        return True, "ok"

    async def _housekeeping(self) -> None:
        last_prune = 0.0
        while True:
            await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)
            try:
                self.engine.check_deadlines()
                now = time.time()
                if now - last_prune > PRUNE_INTERVAL_S:
                    self.store.prune_samples(now - self.settings.sample_retention_s)
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
        await self._server.stop(grace_s)
        if self._telemetry is not None:
            self._telemetry.stop()
        self.store.close()


async def serve(settings: ControllerSettings, ready_file: Path | None = None) -> None:
    """Run a controller until cancelled (SIGINT/SIGTERM are handled by the caller)."""
    server = ControllerServer(settings)
    port = await server.start()
    if ready_file is not None:
        host = settings.listen.rsplit(":", 1)[0]
        tmp = ready_file.with_suffix(".tmp")
        tmp.write_text(f"{host}:{port}\n")
        tmp.replace(ready_file)
    try:
        await server.wait()
    finally:
        await server.stop()
