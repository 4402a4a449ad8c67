"""Ingest: sustained reports/s a controller stores, and whether every one arrived.

N simulated agents send reports (8 GPUs each, no workloads) as fast as the stream takes them
for a fixed time; then the benchmark waits for the controller to drain and checks, per agent,
that the stored sequence equals the number sent (lossless) and that the store holds exactly one
GPU sample row per GPU per report.

    .venv/bin/python bench/ingest.py --agents 50 --seconds 20 [--store postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))

from simulator import _hello, _report

from backstop.api.v1 import agent_pb2, agent_pb2_grpc

GPUS_PER_REPORT = 8


def start_controller(workdir: Path, store: str) -> tuple[subprocess.Popen[bytes], str]:
    ready = workdir / "addr"
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "backstop", "--insecure", "--log-level", "warning",
            "controller", "serve", "--listen", "127.0.0.1:0", "--store", store,
            "--ready-file", str(ready),
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "controller.log", "wb"),  # noqa: SIM115
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not ready.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit("the controller did not start")
        time.sleep(0.1)
    return proc, ready.read_text().split()[0]


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--store", default="", help="default: a fresh SQLite file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        db = Path(tmp) / "db.sqlite"
        store = args.store or f"sqlite:///{db}"
        proc, address = start_controller(Path(tmp), store)
        try:
            sent, elapsed = asyncio.run(run(address, args.agents, args.seconds))
        finally:
            proc.terminate()
            proc.wait(10)
        total = sum(sent.values())
        kind = store.split(":")[0]
        rate = f"{total / elapsed:,.0f}/s"
        line = f"| {kind} | {args.agents} | {total} | {elapsed:.1f} s | {rate} |"
        if not args.store:
            with sqlite3.connect(db) as conn:
                stored = dict(conn.execute("SELECT node_id, last_report_seq FROM nodes"))
                (rows,) = conn.execute("SELECT COUNT(*) FROM gpu_samples").fetchone()
            lossless = stored == sent and rows == total * GPUS_PER_REPORT
            line += f" {'lossless' if lossless else 'LOST REPORTS'} ({rows} sample rows) |"
        print("| store | agents | reports | wall (incl. drain) | reports/s | check |")
        print("|---|---|---|---|---|---|")
        print(line)


if __name__ == "__main__":
    main()
