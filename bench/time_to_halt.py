"""Time to halt: from `shutdown --all` to the last acknowledgement, against a poll baseline.

Starts a real controller process (SQLite, open mode on loopback) per fleet, connects N
simulated agents (bench/simulator.py), issues `shutdown --all` through the control API a few
times, and reads the per-target acknowledgement times the controller recorded. The baseline
fleet checks in every 10 s instead of holding a stream (as osquery/Fleet agents poll), in the
same run, against its own controller.

    .venv/bin/python bench/time_to_halt.py --agents 100 1000 --rounds 5

Prints a Markdown table (medians and p99 over all targets of all rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))

from daemons import start_controller
from simulator import run_fleet

from backstop.api.v1 import control_pb2, control_pb2_grpc, types_pb2


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def measure(address: str, count: int, mode: str, rounds: int) -> dict[str, float]:
    tasks, channels, stats = await run_fleet(address, count, mode, prefix=mode)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = control_pb2_grpc.ControlServiceStub(channel)
        deadline = time.monotonic() + 120
        while True:
            nodes = (await stub.ListNodes(control_pb2.ListNodesRequest())).nodes
            ready = sum(1 for n in nodes) if mode == "poll" else sum(n.connected for n in nodes)
            if ready >= count:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"only {ready} of {count} agents came up")
            await asyncio.sleep(0.5)
        per_target: list[float] = []
        last_ack: list[float] = []
        client_side: list[float] = []
        for _ in range(rounds):
            sent = time.time()
            created = await stub.CreateCorrection(
                control_pb2.CreateCorrectionRequest(
                    action=types_pb2.ACTION_SHUTDOWN,
                    scope=types_pb2.Scope(all=True),
                    reason="benchmark",
                    issuer="bench",
                    ttl_s=600,
                )
            )
            cid = created.spec.correction_id
            final = None
            async for c in stub.WatchCorrection(
                control_pb2.GetCorrectionRequest(correction_id=cid), timeout=120
            ):
                final = c
                if all(t.state == types_pb2.TARGET_STATE_APPLIED for t in c.targets):
                    break
            assert final is not None
            # unreachable targets are terminal, so the watch can end before a poll agent has
            # checked in: keep reading until every target has applied
            # (every 0.5 s: the times come from the controller's records, not from this loop)
            while not all(t.state == types_pb2.TARGET_STATE_APPLIED for t in final.targets):
                await asyncio.sleep(0.5)
                final = await stub.GetCorrection(
                    control_pb2.GetCorrectionRequest(correction_id=cid)
                )
            done = time.time()
            t0 = final.spec.created_at_s
            times = [t.updated_at_s - t0 for t in final.targets]
            per_target += times
            last_ack.append(max(times))
            client_side.append(done - sent)
            await asyncio.sleep(1.0 if mode == "stream" else 0.5)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for ch in channels:
        await ch.close()
    return {
        "agents": count,
        "ack_p50": statistics.median(per_target),
        "ack_p99": percentile(per_target, 99),
        "last_ack_p50": statistics.median(last_ack),
        "last_ack_p99": percentile(last_ack, 99),
        "client_p50": statistics.median(client_side),
        "errors": stats.errors,
    }


def run(count: int, mode: str, rounds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{mode}-") as tmp:
        proc, address = start_controller(Path(tmp), "--ack-timeout", "60")
        try:
            return asyncio.run(measure(address, count, mode, rounds))
        finally:
            proc.terminate()
            proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--poll-rounds", type=int, default=2)
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    print("| fleet | agents | per-agent ack p50 | p99 | last ack p50 | p99 | client wall p50 |")
    print("|---|---|---|---|---|---|---|")
    for count in args.agents:
        modes = [("stream", args.rounds)] + (
            [] if args.no_baseline else [("poll", args.poll_rounds)]
        )
        for mode, rounds in modes:
            r = run(count, mode, rounds)
            print(
                f"| {mode} | {count} | {r['ack_p50'] * 1000:.0f} ms | {r['ack_p99'] * 1000:.0f} ms"
                f" | {r['last_ack_p50'] * 1000:.0f} ms | {r['last_ack_p99'] * 1000:.0f} ms"
                f" | {r['client_p50'] * 1000:.0f} ms |",
                flush=True,
            )


if __name__ == "__main__":
    main()
