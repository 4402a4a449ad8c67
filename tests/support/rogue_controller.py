"""A compromised controller: the controller's TLS key and certificate, no operator key.

A real gRPC ``AgentGateway`` that enrolled agents connect to and trust at the TLS level
(its certificate is the controller's, from the cluster CA). It can send any bytes under any
sequence number, but it can only relay signatures someone else made: the test signs as the
operators would, and the double replays, renumbers, forges and drops as an attacker would.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc

from backstop.api.v1 import agent_pb2, agent_pb2_grpc, types_pb2
from backstop.core.models import AuditHead, CommandAck, Report
from backstop.security.tls import server_credentials
from backstop.wire import convert, correction_convert


class RogueController(agent_pb2_grpc.AgentGatewayServicer):
    def __init__(self, tls_dir: Path) -> None:
        self._tls = tls_dir
        self._outbox: queue.Queue[agent_pb2.ControllerMessage] = queue.Queue()
        self._lock = threading.Lock()
        self.hellos: list[agent_pb2.Hello] = []
        self.acks: list[CommandAck] = []
        self.reports: list[Report] = []
        self._server: grpc.Server | None = None
        self.address = ""

    # --- the server ------------------------------------------------------------------------

    def start(self) -> str:
        server = grpc.server(ThreadPoolExecutor(max_workers=8))
        agent_pb2_grpc.add_AgentGatewayServicer_to_server(self, server)
        creds = server_credentials(
            self._tls / "controller.crt",
            self._tls / "controller.key",
            self._tls / "ca.crt",
            require_client_auth=True,
        )
        port = server.add_secure_port("127.0.0.1:0", creds)
        server.start()
        self._server = server
        self.address = f"127.0.0.1:{port}"
        return self.address

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=0).wait(5)

    def Connect(self, request_iterator: Iterator[agent_pb2.AgentMessage], context: Any) -> Any:
        first = next(request_iterator)
        with self._lock:
            self.hellos.append(first.hello)
        yield agent_pb2.ControllerMessage(
            welcome=agent_pb2.Welcome(
                controller_id="rogue", report_interval_s=0.5, protocol_version=1
            )
        )
        node_id = first.hello.node.node_id
        reader = threading.Thread(target=self._read, args=(request_iterator, node_id), daemon=True)
        reader.start()
        while context.is_active():
            with contextlib.suppress(queue.Empty):
                yield self._outbox.get(timeout=0.1)

    def _read(self, messages: Iterator[agent_pb2.AgentMessage], node_id: str) -> None:
        with contextlib.suppress(grpc.RpcError, ValueError):
            for message in messages:
                kind = message.WhichOneof("body")
                with self._lock:
                    if kind == "ack":
                        self.acks.append(correction_convert.ack_from_pb(message.ack))
                    elif kind == "report":
                        self.reports.append(convert.report_from_pb(message.report, node_id))
                if kind == "report":
                    self._outbox.put(
                        agent_pb2.ControllerMessage(
                            report_ack=agent_pb2.ReportAck(sequence=message.report.sequence)
                        )
                    )

    # --- what the attacker does -------------------------------------------------------------

    def send(
        self,
        sequence: int,
        spec_bytes: bytes,
        signatures: types_pb2.SignedCorrection | None = None,
        audit_head: AuditHead | None = None,
    ) -> None:
        """Send a command: ``signatures`` is a SignedCorrection captured or built elsewhere."""
        correction = signatures or types_pb2.SignedCorrection(spec=spec_bytes)
        correction.spec = spec_bytes
        self._outbox.put(
            agent_pb2.ControllerMessage(
                command=agent_pb2.Command(
                    sequence=sequence,
                    correction=correction,
                    audit_head=convert.audit_head_to_pb(audit_head or AuditHead()),
                )
            )
        )

    def ack_for(self, correction_id: str, sequence: int, timeout_s: float = 30.0) -> CommandAck:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                for ack in self.acks:
                    if ack.correction_id == correction_id and ack.sequence == sequence:
                        return ack
            time.sleep(0.05)
        raise AssertionError(f"no ack for {correction_id} (sequence {sequence}): {self.acks}")

    def latest_report(self) -> Report | None:
        with self._lock:
            return self.reports[-1] if self.reports else None
