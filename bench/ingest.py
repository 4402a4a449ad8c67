"""Ingest: sustained reports/s a controller stores, and whether every one arrived.

N simulated agents send reports (8 GPUs each, no workloads) as fast as the stream takes them
for a fixed time; then the benchmark waits for the controller to drain and checks, per agent,
that the stored sequence equals the number sent (lossless) and that the store holds exactly one
GPU sample row per GPU per report.

    .venv/bin/python bench/ingest.py --agents 40 --seconds 15 --stores sqlite postgresql

``postgresql`` starts a throwaway PostgreSQL server from Debian's package (the test suite's
harness, tests/support/postgres.py: loopback TCP, fsync off); ``--store URL`` measures a store
you already run instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collections.abc import Iterator

import psycopg
from agent_cost import cpu_seconds
from daemons import start_controller
from simulator import _hello, _report

from backstop.api.v1 import agent_pb2, agent_pb2_grpc
from tests.support.postgres import PostgresServer, ensure_server_binaries

GPUS_PER_REPORT = 8


WINDOW = 256
"""Reports an agent may have sent but not yet seen confirmed (like the agent's spool)."""


async def agent(address: str, node_id: str, seconds: float, sent: dict[str, int]) -> None:
    """Send reports as fast as the controller confirms them, for ``seconds``; then drain."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = agent_pb2_grpc.AgentGatewayStub(channel)
        call = stub.Connect()
        await call.write(_hello(node_id))
        await call.read()  # welcome
        confirmed = 0
        progress = asyncio.Event()

        async def read_acks() -> None:
            nonlocal confirmed
            while True:
                message: agent_pb2.ControllerMessage = await call.read()
                if message is grpc.aio.EOF:
                    return
                if message.WhichOneof("body") == "report_ack":
                    confirmed = message.report_ack.sequence
                    progress.set()

        reader = asyncio.create_task(read_acks())
        stop = time.monotonic() + seconds
        seq = 0
        while time.monotonic() < stop:
            while seq - confirmed >= WINDOW:
                progress.clear()
                await progress.wait()
            seq += 1
            await call.write(_report(seq, node_id))
        sent[node_id] = seq
        while confirmed < seq:
            progress.clear()
            await asyncio.wait_for(progress.wait(), 60)
        reader.cancel()
        call.cancel()


async def run(address: str, agents: int, seconds: float) -> tuple[dict[str, int], float]:
    sent: dict[str, int] = {}
    started = time.monotonic()
    await asyncio.gather(*(agent(address, f"ing-{i:04d}", seconds, sent) for i in range(agents)))
    return sent, time.monotonic() - started


@contextlib.contextmanager
def store_url(kind: str, workdir: Path) -> Iterator[str]:
    """A fresh, empty store of ``kind`` (sqlite, postgresql, or a URL), for one measurement."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'db.sqlite'}"
    elif kind == "postgresql":
        bin_dir, _ = ensure_server_binaries()
        pg_dir = Path(tempfile.mkdtemp(prefix="bench-pg-"))  # the server account must reach it
        with PostgresServer(bin_dir, pg_dir) as server:
            yield server.create_database()
    else:
        yield kind


def stored(url: str) -> tuple[dict[str, int], int]:
    """(node -> last stored report sequence, GPU sample rows) as the store holds them."""
    query_nodes = "SELECT node_id, last_report_seq FROM nodes"
    query_rows = "SELECT COUNT(*) FROM gpu_samples"
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return dict(conn.execute(query_nodes)), conn.execute(query_rows).fetchone()[0]
    with psycopg.connect(url) as conn:
        nodes = {str(n): int(q) for n, q in conn.execute(query_nodes).fetchall()}
        row = conn.execute(query_rows).fetchone()
        return nodes, int(row[0]) if row else 0


def measure(kind: str, agents: int, seconds: float) -> str:
    with (
        tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp,
        store_url(kind, Path(tmp)) as url,
    ):
        proc, address = start_controller(Path(tmp), store=url)
        try:
            cpu_before, bench_before = cpu_seconds(proc.pid), time.process_time()
            sent, elapsed = asyncio.run(run(address, agents, seconds))
            controller_cpu = (cpu_seconds(proc.pid) - cpu_before) / elapsed
            bench_cpu = (time.process_time() - bench_before) / elapsed
        finally:
            proc.terminate()
            proc.wait(10)
        total = sum(sent.values())
        nodes, rows = stored(url)
        lossless = nodes == sent and rows == total * GPUS_PER_REPORT
        check = f"{'lossless' if lossless else 'LOST REPORTS'} ({rows:,} sample rows)"
        name = url.split(":")[0]
        return (
            f"| {name} | {agents} | {total:,} | {elapsed:.1f} s | {total / elapsed:,.0f}/s "
            f"| {controller_cpu:.0%} | {bench_cpu:.0%} | {check} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument(
        "--stores",
        nargs="+",
        default=["sqlite", "postgresql"],
        help="sqlite, postgresql (a throwaway server) or store URLs; measured in this order",
    )
    args = parser.parse_args()
    lines = []
    for kind in args.stores:
        lines.append(measure(kind, args.agents, args.seconds))
        print(lines[-1], file=sys.stderr)
    print(
        "| store | agents | reports | wall (incl. drain) | reports/s | controller CPU "
        "| simulated agents' CPU | check |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
