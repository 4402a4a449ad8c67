"""Simulated agents: many agent streams in one process against a real controller.

Each simulated agent speaks the real protocol (Hello, Reports, CommandAcks over
``AgentGateway.Connect``). Two modes:

- ``stream``: Backstop's design. Every agent holds one long-lived stream and acknowledges a
  command the moment it arrives.
- ``poll``: the baseline, the way osquery/Fleet-style agents check in. Every agent connects
  once per ``poll_interval_s`` (each with its own random phase), picks up pending commands,
  acknowledges them and disconnects. The controller's redelivery-on-connect serves them, so
  both modes use the same controller code.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import grpc

from backstop.api.v1 import agent_pb2, agent_pb2_grpc, types_pb2

STREAMS_PER_CHANNEL = 100

ReportMaker = Callable[[int, str], agent_pb2.AgentMessage]
"""(sequence, node id) -> the report message a simulated agent sends."""


@dataclass
class SimStats:
    acks: int = 0
    reports: int = 0
    connects: int = 0
    errors: int = 0
    ack_times: dict[str, float] = field(default_factory=dict)
    """correction id -> time of the last ack sent (by any agent), for wall-clock checks."""


def _hello(node_id: str, last_seq: int = 0) -> agent_pb2.AgentMessage:
    node = types_pb2.Node(
        node_id=node_id,
        hostname=node_id,
        agent_version="sim",
        gpus=[
            types_pb2.GpuSample(index=i, uuid=f"GPU-{node_id}-{i}", name="H100") for i in range(8)
        ],
        nvml_available=True,
    )
    return agent_pb2.AgentMessage(hello=agent_pb2.Hello(node=node, last_command_sequence=last_seq))


def _report(seq: int, node_id: str) -> agent_pb2.AgentMessage:
    gpus = [
        types_pb2.GpuSample(index=i, uuid=f"GPU-{node_id}-{i}", name="H100", utilization_pct=50)
        for i in range(8)
    ]
    return agent_pb2.AgentMessage(
        report=agent_pb2.Report(sequence=seq, sampled_at_s=time.time(), gpus=gpus)
    )


class SimAgent:
    def __init__(
        self,
        node_id: str,
        channel: grpc.aio.Channel,
        stats: SimStats,
        make_report: ReportMaker | None = None,
    ) -> None:
        self.node_id = node_id
        self.make_report = make_report or _report
        self.channel = channel
        self.stats = stats
        self.last_command = 0
        self.report_seq = 0
        self.recent_acks: list[agent_pb2.AgentMessage] = []
        """The latest acks, sent again on every connect (as the real agent does): an ack
        queued as a poll check-in ended would otherwise be lost, and its command, already
        seen, is not sent again."""

    async def _outgoing(
        self, queue: asyncio.Queue[agent_pb2.AgentMessage | None]
    ) -> AsyncIterator[agent_pb2.AgentMessage]:
        yield _hello(self.node_id, self.last_command)
        for ack in self.recent_acks:
            yield ack
        while True:
            item = await queue.get()
            if item is None:
                return
            yield item

    async def _session(self, report_interval_s: float, stay_s: float | None) -> None:
        """One stream: hello, reports every interval, ack every command; for stay_s (or ever)."""
        queue: asyncio.Queue[agent_pb2.AgentMessage | None] = asyncio.Queue()
        stub = agent_pb2_grpc.AgentGatewayStub(self.channel)
        call = stub.Connect(self._outgoing(queue))
        self.stats.connects += 1

        async def reporter() -> None:
            await asyncio.sleep(random.uniform(0, report_interval_s))
            while True:
                self.report_seq += 1
                await queue.put(self.make_report(self.report_seq, self.node_id))
                self.stats.reports += 1
                await asyncio.sleep(report_interval_s)

        task = asyncio.create_task(reporter()) if report_interval_s > 0 else None
        closer = (
            asyncio.get_running_loop().call_later(stay_s, queue.put_nowait, None)
            if stay_s is not None
            else None
        )
        try:
            async for message in call:
                if message.WhichOneof("body") != "command":
                    continue
                cmd = message.command
                spec = types_pb2.CorrectionSpec()
                spec.ParseFromString(cmd.correction.spec)
                self.last_command = max(self.last_command, cmd.sequence)
                ack = agent_pb2.AgentMessage(
                    ack=agent_pb2.CommandAck(
                        correction_id=spec.correction_id,
                        sequence=cmd.sequence,
                        state=types_pb2.TARGET_STATE_APPLIED,
                        message="simulated",
                    )
                )
                self.recent_acks = [*self.recent_acks[-7:], ack]
                await queue.put(ack)
                self.stats.acks += 1
                self.stats.ack_times[spec.correction_id] = time.time()
        except grpc.aio.AioRpcError:
            self.stats.errors += 1
        finally:
            if task is not None:
                task.cancel()
            if closer is not None:
                closer.cancel()

    async def run_stream(self, report_interval_s: float) -> None:
        while True:
            await self._session(report_interval_s, None)
            await asyncio.sleep(0.2)

    async def run_poll(self, poll_interval_s: float) -> None:
        await asyncio.sleep(random.uniform(0, poll_interval_s))
        while True:
            started = time.monotonic()
            # check in: stay just long enough to receive redelivered commands and ack them
            await self._session(0.0, 1.0)
            await asyncio.sleep(max(0.0, poll_interval_s - (time.monotonic() - started)))


async def run_fleet(
    address: str,
    count: int,
    mode: str,
    *,
    prefix: str = "sim",
    report_interval_s: float = 5.0,
    poll_interval_s: float = 10.0,
    stats: SimStats | None = None,
    make_report: ReportMaker | None = None,
) -> tuple[list[asyncio.Task[None]], list[grpc.aio.Channel], SimStats]:
    """Start ``count`` simulated agents (``make_report``: what they report, by default 8 GPUs
    and no workloads); returns their tasks, channels and shared stats."""
    stats = stats or SimStats()
    channels = [
        grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range((count + STREAMS_PER_CHANNEL - 1) // STREAMS_PER_CHANNEL)
    ]
    tasks = []
    for i in range(count):
        channel = channels[i // STREAMS_PER_CHANNEL]
        agent = SimAgent(f"{prefix}-{i:05d}", channel, stats, make_report)
        coro = (
            agent.run_stream(report_interval_s)
            if mode == "stream"
            else agent.run_poll(poll_interval_s)
        )
        tasks.append(asyncio.create_task(coro))
    return tasks, channels, stats
