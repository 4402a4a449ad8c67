"""The agent's side of the uplink, against an in-process controller speaking the real protocol.

A small ``AgentGateway`` servicer on a loopback gRPC server plays the controller: each stream
the session opens becomes a :class:`Stream` whose received messages the test reads and whose
answers the test scripts (``None`` ends the stream). The session's back-off sleeps are
recorded, not slept, so nothing here depends on timing.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from backstop.api.v1 import agent_pb2, agent_pb2_grpc, types_pb2
from backstop.core.models import (
    Action,
    AuditHead,
    Command,
    CommandAck,
    CorrectionSpec,
    NodeInfo,
    Report,
    Scope,
    TargetState,
)
from backstop.uplink import session as session_module
from backstop.uplink.session import PROTOCOL_VERSION, ControllerSession
from backstop.uplink.spool import ReportSpool
from backstop.wire import correction_convert

NODE = "node-a"
HEAD = "ab" * 32
GUARD_S = 20.0
"""Only a guard against a hang: no assertion depends on how long anything takes."""


class Stream:
    """One Connect stream as the controller sees it."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[agent_pb2.AgentMessage] = asyncio.Queue()
        self.answers: asyncio.Queue[agent_pb2.ControllerMessage | None] = asyncio.Queue()

    async def next(self, kind: str) -> Any:
        message = await asyncio.wait_for(self.received.get(), GUARD_S)
        assert message.WhichOneof("body") == kind, message
        return getattr(message, kind)

    def welcome(self, last_report_sequence: int = 0) -> None:
        self.answers.put_nowait(
            agent_pb2.ControllerMessage(
                welcome=agent_pb2.Welcome(
                    controller_id="controller-test",
                    report_interval_s=5.0,
                    protocol_version=PROTOCOL_VERSION,
                    last_report_sequence=last_report_sequence,
                )
            )
        )

    def send(self, message: agent_pb2.ControllerMessage) -> None:
        self.answers.put_nowait(message)

    def end(self) -> None:
        self.answers.put_nowait(None)


class Gateway(agent_pb2_grpc.AgentGatewayServicer):
    """The controller's agent gateway, reduced to what the test scripts."""

    def __init__(self) -> None:
        self.streams: asyncio.Queue[Stream] = asyncio.Queue()

    async def Connect(
        self,
        request_iterator: AsyncIterator[agent_pb2.AgentMessage],
        context: grpc.aio.ServicerContext[agent_pb2.AgentMessage, agent_pb2.ControllerMessage],
    ) -> None:
        stream = Stream()
        self.streams.put_nowait(stream)

        async def receive() -> None:
            async for message in request_iterator:
                stream.received.put_nowait(message)

        receiver = asyncio.create_task(receive())
        try:
            while (answer := await stream.answers.get()) is not None:
                await context.write(answer)
        finally:
            receiver.cancel()

    async def next_stream(self) -> Stream:
        return await asyncio.wait_for(self.streams.get(), GUARD_S)


class RecordedSleeps:
    """Stands in for ``asyncio`` in the session module: back-off sleeps are recorded only."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> RecordedSleeps:
    recorded = RecordedSleeps()
    monkeypatch.setattr(session_module, "asyncio", recorded)
    # no jitter: the back-off is the computed delay itself
    monkeypatch.setattr(session_module, "random", types.SimpleNamespace(uniform=lambda a, b: 1.0))
    return recorded


Handler = Callable[[Command], Awaitable[CommandAck]]


async def _refuse(command: Command) -> CommandAck:
    return CommandAck(command.spec.correction_id, command.sequence, TargetState.REFUSED)


def _run(
    tmp_path: Path,
    scenario: Callable[[Gateway, ControllerSession], Awaitable[None]],
    *,
    on_command: Handler = _refuse,
    reconnect_max_s: float = 10.0,
) -> ControllerSession:
    """Serve a gateway, run a session against it through ``scenario``, then stop both."""

    async def main() -> ControllerSession:
        server = grpc.aio.server()
        gateway = Gateway()
        agent_pb2_grpc.add_AgentGatewayServicer_to_server(gateway, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        session = ControllerSession(
            f"127.0.0.1:{port}",
            lambda: NodeInfo(NODE, hostname="host-a"),
            lambda: 0,
            on_command,
            reconnect_max_s,
            spool=ReportSpool(tmp_path / "spool"),
            heads=lambda: (AuditHead(4, HEAD), AuditHead(9, "cd" * 32)),
        )
        running = asyncio.create_task(session.run())
        try:
            await scenario(gateway, session)
        finally:
            running.cancel()
            with pytest.raises(asyncio.CancelledError):
                await running
            await server.stop(None)
        return session

    return asyncio.run(main())


def _spec(correction_id: str = "cor-0000abcd") -> CorrectionSpec:
    return CorrectionSpec(
        correction_id=correction_id,
        action=Action.PAUSE,
        scope=Scope(all=True),
        reason="test",
        issuer="operator",
        created_at_s=1_000.0,
        expires_at_s=2_000.0,
    )


def test_the_hello_names_the_node_its_sequence_and_heads(
    tmp_path: Path, sleeps: RecordedSleeps
) -> None:
    async def scenario(gateway: Gateway, session: ControllerSession) -> None:
        stream = await gateway.next_stream()
        hello = await stream.next("hello")
        assert hello.node.node_id == NODE
        assert hello.node.hostname == "host-a"
        assert hello.last_command_sequence == 0
        assert hello.protocol_version == PROTOCOL_VERSION
        assert hello.witnessed_audit_head == types_pb2.AuditHead(seq=4, hash=HEAD)
        assert hello.journal_head == types_pb2.AuditHead(seq=9, hash="cd" * 32)
        assert not session.connected.is_set()  # not before the Welcome
        stream.welcome()
        await asyncio.wait_for(session.connected.wait(), GUARD_S)
        assert session.report_interval_s == 5.0

    _run(tmp_path, scenario)


def test_a_stream_the_controller_ends_is_reopened_after_a_growing_capped_backoff(
    tmp_path: Path, sleeps: RecordedSleeps
) -> None:
    async def scenario(gateway: Gateway, session: ControllerSession) -> None:
        for _ in range(4):
            stream = await gateway.next_stream()
            assert (await stream.next("hello")).node.node_id == NODE
            stream.welcome()
            await asyncio.wait_for(session.connected.wait(), GUARD_S)
            stream.end()
        stream = await gateway.next_stream()  # a fifth stream: the session came back again
        assert (await stream.next("hello")).node.node_id == NODE

    _run(tmp_path, scenario, reconnect_max_s=0.5)
    assert sleeps.sleeps == [0.2, 0.4, 0.5, 0.5]


def test_a_command_goes_to_the_handler_and_its_ack_to_the_controller(
    tmp_path: Path, sleeps: RecordedSleeps
) -> None:
    spec = _spec()
    data = correction_convert.spec_bytes(spec)
    handled: list[Command] = []

    async def apply(command: Command) -> CommandAck:
        handled.append(command)
        return CommandAck(spec.correction_id, command.sequence, TargetState.APPLIED, "paused 1")

    async def scenario(gateway: Gateway, session: ControllerSession) -> None:
        stream = await gateway.next_stream()
        await stream.next("hello")
        stream.welcome()
        stream.send(
            agent_pb2.ControllerMessage(
                command=agent_pb2.Command(
                    sequence=7,
                    correction=correction_convert.signed_correction(data),
                    audit_head=types_pb2.AuditHead(seq=3, hash=HEAD),
                )
            )
        )
        ack = await stream.next("ack")
        assert ack.correction_id == spec.correction_id
        assert ack.sequence == 7
        assert ack.state == correction_convert.target_state_to_pb(TargetState.APPLIED)
        assert ack.message == "paused 1"

    _run(tmp_path, scenario, on_command=apply)
    (command,) = handled
    assert command.sequence == 7
    assert command.spec == spec
    assert command.spec_bytes == data
    assert command.audit_head == AuditHead(3, HEAD)


def test_reports_go_out_in_sequence_and_leave_the_spool_once_acknowledged(
    tmp_path: Path, sleeps: RecordedSleeps
) -> None:
    async def scenario(gateway: Gateway, session: ControllerSession) -> None:
        for sequence in (1, 2, 3):
            session.send_report(Report(NODE, sequence, 1_000.0 + sequence))
        stream = await gateway.next_stream()
        await stream.next("hello")
        stream.welcome(last_report_sequence=0)
        sent = [(await stream.next("report")).sequence for _ in range(3)]
        assert sent == [1, 2, 3]
        stream.send(agent_pb2.ControllerMessage(report_ack=agent_pb2.ReportAck(sequence=2)))
        # a command after the ReportAck: its ack shows the ReportAck was read before it
        stream.send(
            agent_pb2.ControllerMessage(
                command=agent_pb2.Command(
                    sequence=1,
                    correction=correction_convert.signed_correction(
                        correction_convert.spec_bytes(_spec())
                    ),
                )
            )
        )
        await stream.next("ack")
        assert [s for s, _ in session._spool.after(0)] == [3]
        stream.end()
        again = await gateway.next_stream()
        await again.next("hello")
        again.welcome(last_report_sequence=0)  # a controller that lost what it stored
        assert (await again.next("report")).sequence == 3  # 1 and 2 are gone for good
        session.send_report(Report(NODE, 4, 1_004.0))
        assert (await again.next("report")).sequence == 4

    _run(tmp_path, scenario)
