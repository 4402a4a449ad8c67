"""The agent gateway over a real gRPC server on a free loopback port.

Raw client streams stand in for agents so that tests can send what a real agent never would:
no Hello, garbage bytes, oversized messages, invalid contents.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, cast

import grpc
import pytest

from backstop.api.v1 import agent_pb2, agent_pb2_grpc, control_pb2, control_pb2_grpc, types_pb2
from backstop.controller.server import ControllerServer
from backstop.controller.store import Store, open_store
from backstop.core.models import Report
from backstop.core.settings import ControllerSettings
from backstop.wire import convert, correction_convert
from tests.controller.conftest import node

Scenario = Callable[[ControllerServer, str], Coroutine[Any, Any, None]]


def run_with_server(tmp_path: Path, scenario: Scenario, **overrides: Any) -> None:
    settings = ControllerSettings(
        listen="127.0.0.1:0",
        insecure=True,
        store_url=f"sqlite:///{tmp_path / 'c.db'}",
        hello_timeout_s=overrides.pop("hello_timeout_s", 2.0),
        max_message_bytes=overrides.pop("max_message_bytes", 64 * 1024),
        **overrides,
    )

    async def main() -> None:
        server = ControllerServer(settings)
        port = await server.start()
        try:
            await asyncio.wait_for(scenario(server, f"127.0.0.1:{port}"), 20)
        finally:
            await server.stop(0)

    asyncio.run(main())


def hello(node_id: str = "n1", last_seq: int = 0) -> agent_pb2.AgentMessage:
    return agent_pb2.AgentMessage(
        hello=agent_pb2.Hello(
            node=convert.node_to_pb(node(node_id)), last_command_sequence=last_seq
        )
    )


async def open_stream(address: str) -> tuple[grpc.aio.Channel, Any]:
    channel = grpc.aio.insecure_channel(address)
    return channel, agent_pb2_grpc.AgentGatewayStub(channel).Connect()


async def read_until_error(call: Any) -> None:
    """Read until the server ends the stream with an error (EOF is a test failure)."""
    while True:
        msg = await call.read()
        assert msg is not grpc.aio.EOF, "the stream ended without an error"


async def list_nodes(address: str) -> list[types_pb2.Node]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = control_pb2_grpc.ControlServiceStub(channel)
        return list((await stub.ListNodes(control_pb2.ListNodesRequest())).nodes)


async def until(probe: Callable[[], Any], timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await probe():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def test_hello_welcome_report_and_disconnect(tmp_path: Path) -> None:
    async def scenario(server: ControllerServer, address: str) -> None:
        channel, call = await open_stream(address)
        await call.write(hello("n1"))
        welcome = await call.read()
        assert welcome.WhichOneof("body") == "welcome"
        assert welcome.welcome.report_interval_s == server.settings.report_interval_s
        report = agent_pb2.Report(sequence=1, sampled_at_s=1.0)
        await call.write(agent_pb2.AgentMessage(report=report))

        async def stored() -> bool:
            rec = server.store.get_node("n1")
            return rec is not None and rec.last_seen_s > 0 and rec.connected

        await until(stored)
        assert [n.node_id for n in await list_nodes(address)] == ["n1"]
        await call.done_writing()
        await channel.close()

        async def disconnected() -> bool:
            return not (await list_nodes(address))[0].connected

        await until(disconnected)

    run_with_server(tmp_path, scenario)


def test_stream_without_hello_is_refused(tmp_path: Path) -> None:
    async def scenario(server: ControllerServer, address: str) -> None:
        channel, call = await open_stream(address)
        await call.write(agent_pb2.AgentMessage(report=agent_pb2.Report(sequence=1)))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call.read()
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "must be a Hello" in (err.value.details() or "")
        await channel.close()
        assert await list_nodes(address) == []

    run_with_server(tmp_path, scenario)


def test_silent_stream_times_out(tmp_path: Path) -> None:
    async def scenario(server: ControllerServer, address: str) -> None:
        channel, call = await open_stream(address)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call.read()
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "no Hello" in (err.value.details() or "")
        await channel.close()

    run_with_server(tmp_path, scenario, hello_timeout_s=0.3)


def test_invalid_report_closes_only_that_stream_and_stores_nothing(tmp_path: Path) -> None:
    async def scenario(server: ControllerServer, address: str) -> None:
        good_channel, good = await open_stream(address)
        await good.write(hello("good"))
        await good.read()
        channel, call = await open_stream(address)
        await call.write(hello("bad"))
        await call.read()
        bad_workload = types_pb2.Workload(workload_id="")  # an id is required
        report = agent_pb2.Report(sequence=1, workloads=[bad_workload])
        await call.write(agent_pb2.AgentMessage(report=report))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await read_until_error(call)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "workload id is missing" in (err.value.details() or "")
        assert server.store.list_workloads("bad") == []
        nodes = {n.node_id: n.connected for n in await list_nodes(address)}
        assert nodes["good"] is True
        await good.done_writing()
        await channel.close()
        await good_channel.close()

    run_with_server(tmp_path, scenario)


def test_garbage_bytes_and_oversized_messages_are_refused(tmp_path: Path) -> None:
    async def scenario(server: ControllerServer, address: str) -> None:
        async with grpc.aio.insecure_channel(address) as channel:
            raw = channel.stream_stream(
                "/backstop.v1.AgentGateway/Connect",
                request_serializer=lambda b: b,
                response_deserializer=lambda b: b,
            )
            call = raw()
            await call.write(b"\xff\xfe garbage that is not protobuf")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call.read()
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "not a valid AgentMessage" in (err.value.details() or "")

            call = raw()
            await call.write(hello("big").SerializeToString())
            await call.read()
            huge = agent_pb2.AgentMessage(
                report=agent_pb2.Report(
                    sequence=1,
                    workloads=[types_pb2.Workload(workload_id="wl-" + "x" * 100_000)],
                )
            )
            await call.write(huge.SerializeToString())
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await read_until_error(call)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # the server is still serving
        assert {n.node_id for n in await list_nodes(address)} == {"big"}

    run_with_server(tmp_path, scenario)


def test_commands_flow_down_and_acks_complete_the_correction(tmp_path: Path) -> None:
    async def scenario(server: ControllerServer, address: str) -> None:
        channel, call = await open_stream(address)
        await call.write(hello("n1"))
        await call.read()
        async with grpc.aio.insecure_channel(address) as ctl_channel:
            ctl = control_pb2_grpc.ControlServiceStub(ctl_channel)
            created = await ctl.CreateCorrection(
                control_pb2.CreateCorrectionRequest(
                    action=types_pb2.ACTION_PAUSE,
                    scope=types_pb2.Scope(all=True),
                    reason="test",
                    issuer="alice",
                )
            )
            msg = await call.read()
            while msg.WhichOneof("body") != "command":
                msg = await call.read()
            spec = correction_convert.spec_from_bytes(msg.command.correction.spec)
            assert spec.correction_id == created.spec.correction_id
            assert msg.command.sequence == 1
            ack = agent_pb2.CommandAck(
                correction_id=spec.correction_id,
                sequence=msg.command.sequence,
                state=types_pb2.TARGET_STATE_APPLIED,
                message="paused",
            )
            await call.write(agent_pb2.AgentMessage(ack=ack))
            states = [
                c.state
                async for c in ctl.WatchCorrection(
                    control_pb2.GetCorrectionRequest(correction_id=spec.correction_id)
                )
            ]
            assert states[-1] == types_pb2.CORRECTION_STATE_COMPLETED
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await ctl.GetCorrection(control_pb2.GetCorrectionRequest(correction_id="cor-x"))
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await ctl.CreateCorrection(
                    control_pb2.CreateCorrectionRequest(
                        action=types_pb2.ACTION_PAUSE,
                        scope=types_pb2.Scope(node_ids=["ghost"]),
                        reason="x",
                        issuer="a",
                    )
                )
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
        await channel.close()

    run_with_server(tmp_path, scenario)


def test_a_connecting_agent_gets_every_unacknowledged_command_whatever_its_sequence(
    tmp_path: Path,
) -> None:
    """An empty store numbers commands from 1 again; an agent that last saw 34 still gets it,
    with the controller's audit head as of sending."""

    async def scenario(server: ControllerServer, address: str) -> None:
        channel, call = await open_stream(address)
        await call.write(hello("n1"))
        await call.read()
        await channel.close()

        async def offline() -> bool:
            return not server.engine.connected("n1")

        await until(offline)
        async with grpc.aio.insecure_channel(address) as ctl_channel:
            ctl = control_pb2_grpc.ControlServiceStub(ctl_channel)
            created = await ctl.CreateCorrection(
                control_pb2.CreateCorrectionRequest(
                    action=types_pb2.ACTION_PAUSE,
                    scope=types_pb2.Scope(all=True),
                    reason="while away",
                    issuer="alice",
                )
            )
            assert created.targets[0].state == types_pb2.TARGET_STATE_UNREACHABLE
        channel, call = await open_stream(address)
        await call.write(hello("n1", last_seq=34))
        await call.read()  # welcome
        msg = await call.read()
        assert msg.WhichOneof("body") == "command"
        assert msg.command.sequence == 1
        head = server.store.audit_head()
        assert (msg.command.audit_head.seq, msg.command.audit_head.hash) == (head.seq, head.hash)
        assert server.store.list_audit()[-1].action == "command.redeliver"
        await channel.close()

    run_with_server(tmp_path, scenario)


def _workloads(count: int, pids: int = 1) -> list[types_pb2.Workload]:
    return [
        types_pb2.Workload(workload_id=f"w-{i}", pids=list(range(1, pids + 1)))
        for i in range(count)
    ]


def test_reports_past_a_bound_end_the_stream_and_store_nothing(tmp_path: Path) -> None:
    async def scenario(server: ControllerServer, address: str) -> None:
        async def refused(report: agent_pb2.Report) -> str:
            channel, call = await open_stream(address)
            await call.write(hello("n1"))
            await call.read()
            await call.write(agent_pb2.AgentMessage(report=report))
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await read_until_error(call)
            await channel.close()
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            return err.value.details() or ""

        channel, call = await open_stream(address)
        await call.write(hello("n1"))
        await call.read()
        await call.write(
            agent_pb2.AgentMessage(report=agent_pb2.Report(sequence=5, workloads=_workloads(2)))
        )
        await until(lambda: _true(server.store.last_report_sequence("n1") == 5))
        await channel.close()
        details = [
            await refused(agent_pb2.Report(sequence=6, workloads=_workloads(4097))),
            await refused(agent_pb2.Report(sequence=6, workloads=_workloads(1, pids=4097))),
            await refused(agent_pb2.Report(sequence=6, gpus=[types_pb2.GpuSample()] * 65)),
            await refused(agent_pb2.Report(sequence=10**9)),
            await refused(agent_pb2.Report(sequence=2**53 + 1)),
        ]
        assert [d.split(": ", 1)[1].split(";")[0] for d in details] == [
            "4097 workloads",
            "workload 'w-0' has 4097 pids",
            "65 GPUs",
            "report sequence 1000000000 is 999999995 above the last one seen from this node (5)",
            "report sequence 9007199254740993 is above 2**53",
        ]
        assert all(d.startswith("invalid report message: ") for d in details)
        assert server.store.last_report_sequence("n1") == 5
        assert {w.workload_id for w in server.store.list_workloads("n1")} == {"w-0", "w-1"}
        refusals = [e for e in server.store.list_audit() if e.action == "report.refused"]
        assert [(e.actor, e.subject) for e in refusals] == [("n1", "n1")] * 5
        # within the bounds, a jump is taken (a real agent adopts it from the Welcome)
        channel, call = await open_stream(address)
        await call.write(hello("n1"))
        await call.read()
        await call.write(agent_pb2.AgentMessage(report=agent_pb2.Report(sequence=900_000)))
        await until(lambda: _true(server.store.last_report_sequence("n1") == 900_000))
        await channel.close()

    run_with_server(tmp_path, scenario, max_message_bytes=1024 * 1024)


class _HeldStore:
    """The real store, except that the first batch of reports waits until ``release`` is set."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.release = threading.Event()
        self.batches: list[list[int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def record_reports(self, reports: Sequence[Report], now_s: float) -> list[bool | None]:
        self.batches.append([r.sequence for r in reports])
        if len(self.batches) == 1:
            assert self.release.wait(10), "the test never released the first batch"
        return self._store.record_reports(reports, now_s)


HeldScenario = Callable[[_HeldStore, str, Any], Coroutine[Any, Any, None]]


def run_with_held_store(tmp_path: Path, scenario: HeldScenario) -> None:
    """A controller over a store that holds the first batch of reports until released, and
    one agent stream that has sent its Hello and report 1 (which the store now holds)."""
    held = _HeldStore(open_store(f"sqlite:///{tmp_path / 'c.db'}"))
    settings = ControllerSettings(listen="127.0.0.1:0", insecure=True)

    async def main() -> None:
        server = ControllerServer(settings, store=cast(Store, held))
        address = f"127.0.0.1:{await server.start()}"
        channel, call = await open_stream(address)
        try:
            await call.write(hello("n1"))
            await call.read()  # Welcome
            await call.write(agent_pb2.AgentMessage(report=agent_pb2.Report(sequence=1)))
            await until(lambda: _true(held.batches == [[1]]))
            await scenario(held, address, call)
        finally:
            held.release.set()
            await channel.close()
            await server.stop(0)

    asyncio.run(main())


async def _true(value: bool) -> bool:
    return value


def test_reports_keep_arriving_while_a_batch_is_written(tmp_path: Path) -> None:
    """A slow write does not stall the event loop; what arrives meanwhile is the next batch."""

    async def scenario(held: _HeldStore, address: str, call: Any) -> None:
        for seq in (2, 3, 4):
            await call.write(agent_pb2.AgentMessage(report=agent_pb2.Report(sequence=seq)))
        # the loop still serves calls while the first batch is being written
        assert [n.node_id for n in await list_nodes(address)] == ["n1"]
        assert held.last_report_sequence("n1") == 0
        held.release.set()
        await until(lambda: _true(held.last_report_sequence("n1") == 4))
        assert held.batches == [[1], [2, 3, 4]]
        while True:  # the agent is told that all four are stored
            msg = await call.read()
            if msg.WhichOneof("body") == "report_ack" and msg.report_ack.sequence == 4:
                break

    run_with_held_store(tmp_path, scenario)


def test_a_stream_ends_only_after_its_reports_are_through_the_store(tmp_path: Path) -> None:
    async def scenario(held: _HeldStore, address: str, call: Any) -> None:
        await call.done_writing()
        with pytest.raises(asyncio.TimeoutError):  # the status waits for the write
            await asyncio.wait_for(asyncio.shield(call.code()), 0.5)
        held.release.set()
        assert await call.code() == grpc.StatusCode.OK
        assert held.last_report_sequence("n1") == 1

    run_with_held_store(tmp_path, scenario)
