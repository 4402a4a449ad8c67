"""The agent's one long-lived, agent-initiated stream to the controller.

The agent dials out (so it works behind NAT), sends a Hello with its inventory, the newest
controller audit head it witnessed and its own journal's head, then sends reports and acks
while receiving commands. When the stream breaks it reconnects with capped exponential backoff
and jitter; commands it missed are redelivered by the controller on the new stream. Each
command's ``audit_head`` (the controller's audit head when it was issued) is decoded with it.

Several controller replicas may be given (``HOST:PORT,HOST:PORT``). The session stays on the
one that works; when its stream breaks, it tries the next one at once, and backs off only once
every replica has failed in a row. Any replica serves any agent: they share one store.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import grpc

from backstop.api.v1 import agent_pb2, agent_pb2_grpc
from backstop.core.errors import BackstopError, PermissionDenied
from backstop.core.models import (
    AuditHead,
    Command,
    CommandAck,
    NodeInfo,
    PolicyAuthority,
    Report,
    TargetState,
)
from backstop.core.netaddr import require_loopback_for_plaintext, split_addresses
from backstop.uplink import metrics
from backstop.uplink.spool import ReportSpool
from backstop.wire import convert, correction_convert

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 8 * 1024 * 1024

CommandHandler = Callable[[Command], Awaitable[CommandAck]]
Heads = Callable[[], tuple[AuditHead, AuditHead]]
"""The newest controller audit head witnessed, and the head of the agent's own journal."""


PoliciesHandler = Callable[
    [list[PolicyAuthority], list[PolicyAuthority]], Coroutine[Any, Any, None]
]
"""Called with the node policies in force and the deletions the controller sent."""


async def _ignore_policies(
    _enforce: list[PolicyAuthority], _deletions: list[PolicyAuthority]
) -> None:
    return None


class ControllerSession:
    """Keeps the stream up; ``send_report`` and acks go through one outbox."""

    def __init__(
        self,
        address: str,
        inventory: Callable[[], NodeInfo],
        last_command_sequence: Callable[[], int],
        on_command: CommandHandler,
        reconnect_max_s: float = 10.0,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        on_connected: Callable[[], list[CommandAck]] | None = None,
        spool: ReportSpool,
        peer_check: Callable[[str], None] | None = None,
        heads: Heads | None = None,
        adopt_report_sequence: Callable[[int], int | None] | None = None,
        on_policies: PoliciesHandler | None = None,
        node_policies: Callable[[], str] = lambda: "",
    ) -> None:
        self._node_policies = node_policies
        """The digest of the node policies the agent keeps, said in each Hello."""
        if credentials is None:
            require_loopback_for_plaintext(address)
        self._credentials = credentials
        self._peer_check = peer_check
        """Called with the address once a stream is up; raises PermissionDenied to refuse the
        controller (its certificate is on the CA's revocation list: link/peer_check.py)."""
        self._on_connected = on_connected
        self._addresses = split_addresses(address)
        self._address = self._addresses[0]
        self._inventory = inventory
        self._last_sequence = last_command_sequence
        self._on_command = on_command
        self._on_policies: PoliciesHandler = on_policies or _ignore_policies
        """Given the node policies the controller sends (the agent keeps and enforces them)."""
        self._heads = heads
        self._reconnect_max_s = reconnect_max_s
        self._spool = spool
        self._adopt_report_sequence = adopt_report_sequence
        """Given the Welcome's stored report sequence; the agent's own when it was lower."""
        self._sent_report = 0
        """Highest spooled report written to the current stream."""
        self._acks: asyncio.Queue[agent_pb2.AgentMessage] = asyncio.Queue()
        self._pending = asyncio.Event()
        self.connected = asyncio.Event()
        self.report_interval_s: float | None = None
        self.last_contact_s = 0.0
        self._command_tasks: set[asyncio.Task[None]] = set()

    @property
    def dropped_reports(self) -> int:
        return self._spool.dropped

    def send_report(self, report: Report) -> bool:
        """Spool a report; it is sent (again, after a reconnect) until the controller stores it."""
        stored = self._spool.append(
            report.sequence, convert.report_to_pb(report).SerializeToString()
        )
        self._pending.set()
        return stored

    def flush_spool(self) -> None:
        self._spool.flush()

    def _send_ack(self, ack: agent_pb2.CommandAck) -> None:
        """Acks are never dropped and go out before any queued report."""
        self._acks.put_nowait(agent_pb2.AgentMessage(ack=ack))
        self._pending.set()

    async def _next_message(self) -> agent_pb2.AgentMessage:
        while True:
            if not self._acks.empty():
                return self._acks.get_nowait()
            record = self._spool.next_after(self._sent_report)
            if record is not None:
                self._sent_report = record[0]
                report = agent_pb2.Report()
                report.ParseFromString(record[1])
                return agent_pb2.AgentMessage(report=report)
            self._pending.clear()
            await self._pending.wait()

    @property
    def address(self) -> str:
        """The controller replica this session uses (or tries) now."""
        return self._address

    async def run(self) -> None:
        """Connect, serve, reconnect (to the next replica given); until cancelled."""
        delay = 0.2
        failures = 0
        while True:
            started = time.monotonic()
            try:
                await self._serve_once()
            except asyncio.CancelledError:
                raise
            except PermissionDenied as exc:
                log.error(  # noqa: TRY400 - a refusal, not a bug: no traceback
                    "controller refused", extra={"controller": self._address, "error": exc.message}
                )
            except grpc.aio.AioRpcError as exc:
                log.warning(
                    "controller stream ended",
                    extra={
                        "controller": self._address,
                        "code": exc.code().name,
                        "error": exc.details(),
                    },
                )
            except Exception:
                log.exception("controller stream failed", extra={"controller": self._address})
            self.connected.clear()
            metrics.CONNECTED.set(0)
            if time.monotonic() - started > 30:
                delay, failures = 0.2, 0
            failures += 1
            following = (self._addresses.index(self._address) + 1) % len(self._addresses)
            self._address = self._addresses[following]
            if failures % len(self._addresses):
                continue  # another replica to try before backing off
            sleep = min(delay, self._reconnect_max_s) * random.uniform(0.5, 1.0)  # noqa: S311
            await asyncio.sleep(sleep)
            delay = min(delay * 2, self._reconnect_max_s)

    async def _serve_once(self) -> None:
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", 20_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
        ]
        channel = (
            grpc.aio.secure_channel(self._address, self._credentials, options=options)
            if self._credentials is not None
            else grpc.aio.insecure_channel(self._address, options=options)
        )
        async with channel:
            stub = agent_pb2_grpc.AgentGatewayStub(channel)
            call = stub.Connect()
            witnessed, journal = self._heads() if self._heads else (AuditHead(), AuditHead())
            hello = agent_pb2.Hello(
                node=convert.node_to_pb(self._inventory()),
                last_command_sequence=self._last_sequence(),
                protocol_version=PROTOCOL_VERSION,
                witnessed_audit_head=convert.audit_head_to_pb(witnessed),
                journal_head=convert.audit_head_to_pb(journal),
                node_policies=self._node_policies(),
            )
            await call.write(agent_pb2.AgentMessage(hello=hello))
            welcome = await call.read()
            if welcome is grpc.aio.EOF or not welcome.HasField("welcome"):
                raise ConnectionError("controller did not answer the Hello with a Welcome")
            if self._peer_check is not None:  # before anything it sent is acted on
                self._peer_check(self._address)
            self.report_interval_s = welcome.welcome.report_interval_s or None
            stored = welcome.welcome.last_report_sequence
            self._adopt_stored_sequence(stored)
            self._spool.confirm(stored)
            self._sent_report = stored  # resend everything the controller has not stored
            self.last_contact_s = time.time()
            self.connected.set()
            metrics.CONNECTED.set(1)
            log.info(
                "connected to controller",
                extra={"controller": self._address, "controller_id": welcome.welcome.controller_id},
            )
            for ack in self._on_connected() if self._on_connected else []:
                self._send_ack(correction_convert.ack_to_pb(ack))
            writer = asyncio.create_task(self._write_loop(call))
            try:
                await self._read_loop(call)
            finally:
                writer.cancel()

    def _adopt_stored_sequence(self, stored: int) -> None:
        """Continue above the controller's stored report sequence when it is ahead of ours."""
        own = self._adopt_report_sequence(stored) if self._adopt_report_sequence else None
        if own is not None:
            node_id = self._inventory().node_id
            log.warning(
                "the controller has stored reports of this node up to a sequence above this "
                "agent's own; continuing above it. Unless this agent's state was lost, another "
                "sender may be using the identity (certificate and key) of node %s",
                node_id,
                extra={"node": node_id, "stored": stored, "own": own},
            )

    async def _write_loop(self, call: Any) -> None:
        while True:
            message = await self._next_message()
            await call.write(message)
            if message.HasField("report"):
                metrics.REPORTS_SENT.inc()

    async def _read_loop(self, call: Any) -> None:
        while True:
            message = await call.read()
            if message is grpc.aio.EOF:
                return
            self.last_contact_s = time.time()
            kind = message.WhichOneof("body")
            if kind == "report_ack":
                self._spool.confirm(message.report_ack.sequence)
            elif kind == "policies":
                self._take_policies(message.policies)
            elif kind == "command":
                task = asyncio.create_task(self._handle_command(message.command))
                self._command_tasks.add(task)
                task.add_done_callback(self._command_tasks.discard)

    def _take_policies(self, msg: agent_pb2.NodePolicies) -> None:
        try:
            enforce = [correction_convert.policy_authority_from_pb(m) for m in msg.enforce]
            deletions = [correction_convert.policy_authority_from_pb(m) for m in msg.deletions]
        except BackstopError as exc:
            log.warning("refused malformed node policies", extra={"error": exc.message})
            return
        task = asyncio.create_task(self._on_policies(enforce, deletions))
        self._command_tasks.add(task)
        task.add_done_callback(self._command_tasks.discard)

    async def _handle_command(self, msg: agent_pb2.Command) -> None:
        try:
            spec = correction_convert.spec_from_bytes(msg.correction.spec)
            signatures = correction_convert.signatures_from_pb(msg.correction.signatures)
            authority = correction_convert.authority_from_pb(msg.correction)
            audit_head = convert.audit_head_from_pb(msg.audit_head)
        except Exception as exc:  # noqa: BLE001 - any malformed command is refused, not fatal
            log.warning("refused malformed command", extra={"sequence": msg.sequence})
            self._send_ack(
                agent_pb2.CommandAck(
                    correction_id="malformed",
                    sequence=msg.sequence,
                    state=correction_convert.target_state_to_pb(TargetState.REFUSED),
                    message=f"malformed command: {exc}",
                )
            )
            return
        command = Command(
            sequence=msg.sequence,
            spec=spec,
            spec_bytes=bytes(msg.correction.spec),
            signatures=signatures,
            audit_head=audit_head,
            authority=authority,
        )
        result = await self._on_command(command)
        self._send_ack(correction_convert.ack_to_pb(result))
