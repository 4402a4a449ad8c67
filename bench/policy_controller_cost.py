"""Controller cost of policies: ingest and CPU with 100 policies in force against none.

A real controller (SQLite, open mode on loopback) serves 1,000 simulated agents
(bench/simulator.py) holding streams and reporting every ``--report-interval`` seconds: 8 GPUs
and ``--workloads`` workloads each, built like bench/policy_eval.py's (identified models, a mix
of frameworks, namespaces, team labels, serving figures). Every serving workload's tokens per
second change with each report (what a reading of the server does), so while an expression is
in force the controller judges those workloads again on every report.

With policies, the 100 of bench/policy_eval.py are applied through the control API once the
fleet is connected (so the warm-up holds the first judgement of every workload): 60
field-only (model_id, architecture, framework and namespace, labels, node, structure_id), 20
field + CEL, 20 CEL-only, all ``action: alert`` (none corrects: an alert is raised once per
policy and workload and deduplicated after that). After the warm-up, the controller's CPU
(utime + stime from ``/proc/PID/stat``) and the reports it stored (the sum of every node's
last stored sequence) are read over a window.
Runs alternate without and with policies, each against a fresh controller.

    PYTHONPATH=src .venv/bin/python bench/policy_controller_cost.py --rounds 3

Prints one line per run and a Markdown table of the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))

from agent_cost import cpu_seconds
from daemons import start_controller
from policy_eval import policy_texts, workloads
from simulator import run_fleet

from backstop.api.v1 import agent_pb2, control_pb2, control_pb2_grpc, types_pb2
from backstop.wire.convert import workload_to_pb


@dataclass
class Run:
    policies: int
    reports_per_s: float
    controller_cpu: float
    simulator_cpu: float
    alerts: tuple[int, int]
    """Alerts stored at the start and the end of the window (the same: deduplicated)."""
    workloads: int


class Reports:
    """Each node's report: its workloads (encoded once), serving figures moved per report."""

    def __init__(self, agents: int, per_node: int, prefix: str, moving: bool = True) -> None:
        made = workloads(agents * per_node)
        self.moving = moving
        self.by_node: dict[str, list[types_pb2.Workload]] = {}
        for n in range(agents):
            node = f"{prefix}-{n:05d}"
            self.by_node[node] = [
                workload_to_pb(w) for w in made[n * per_node : (n + 1) * per_node]
            ]
            for w in self.by_node[node]:
                w.node_id = node
                w.workload_id = f"{w.workload_id}-{node}"

    def __call__(self, seq: int, node_id: str) -> agent_pb2.AgentMessage:
        gpus = [
            types_pb2.GpuSample(index=i, uuid=f"GPU-{node_id}-{i}", name="H100") for i in range(8)
        ]
        report = agent_pb2.Report(sequence=seq, sampled_at_s=time.time(), gpus=gpus)
        for w in self.by_node[node_id]:
            copy = report.workloads.add()
            copy.CopyFrom(w)
            if self.moving and copy.HasField("serving"):
                copy.serving.generated_tokens_per_s = float(seq % 500)
        return agent_pb2.AgentMessage(report=report)


async def apply_policies(address: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = control_pb2_grpc.ControlServiceStub(channel)
        for i, text in enumerate(policy_texts()):
            applied = await stub.ApplyPolicy(
                control_pb2.ApplyPolicyRequest(
                    document=text.encode(), source=f"p-{i}.yaml", requested_by="bench"
                )
            )
            assert applied.state == control_pb2.POLICY_STATE_ACTIVE, applied


def stored(db: Path) -> tuple[int, int]:
    """(sum of every node's last stored report sequence, alerts) in the store."""
    with sqlite3.connect(db) as conn:
        (seqs,) = conn.execute("SELECT COALESCE(SUM(last_report_seq), 0) FROM nodes").fetchone()
        (alerts,) = conn.execute("SELECT COUNT(*) FROM alerts").fetchone()
    return int(seqs), int(alerts)


async def measure(
    address: str, pid: int, db: Path, reports: Reports, args: argparse.Namespace
) -> tuple[float, float, float, tuple[int, int]]:
    """Connect the fleet, wait for it and the warm-up, then read the window."""
    agents = args.agents
    tasks, channels, _ = await run_fleet(
        address,
        agents,
        "stream",
        prefix="pol",
        report_interval_s=args.report_interval,
        make_report=reports,
    )
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = control_pb2_grpc.ControlServiceStub(channel)
            deadline = time.monotonic() + 300
            while True:
                nodes = (await stub.ListNodes(control_pb2.ListNodesRequest())).nodes
                if sum(n.connected for n in nodes) >= agents:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit("the simulated agents did not all connect")
                await asyncio.sleep(1)
            if args.with_policies:
                await apply_policies(address)
        await asyncio.sleep(args.warmup)
        return await window(pid, db, args.seconds)
    finally:
        # streams cut mid-message only complain about it: nothing to report
        asyncio.get_running_loop().set_exception_handler(lambda _loop, _context: None)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in channels:
            await channel.close()


async def window(pid: int, db: Path, seconds: float) -> tuple[float, float, float, tuple[int, int]]:
    """(reports stored per second, controller CPU share, this process's CPU share, alerts)
    over ``seconds``."""
    seqs_before, alerts_before = stored(db)
    cpu_before, sim_before, started = cpu_seconds(pid), time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - started
    cpu, sim = cpu_seconds(pid) - cpu_before, time.process_time() - sim_before
    seqs_after, alerts = stored(db)
    rate = (seqs_after - seqs_before) / elapsed
    return rate, cpu / elapsed, sim / elapsed, (alerts_before, alerts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--workloads", type=int, default=4, help="per agent")
    parser.add_argument("--report-interval", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--static-serving",
        action="store_true",
        help="serving figures never change (a report repeats the last: nothing is judged again)",
    )
    parser.add_argument("--policies-only", action="store_true", help="only runs with policies")
    args = parser.parse_args()
    reports = Reports(args.agents, args.workloads, "pol", moving=not args.static_serving)
    runs: list[Run] = []
    for _ in range(args.rounds):
        for with_policies in (True,) if args.policies_only else (False, True):
            runs.append(one_run(args, reports, with_policies))
            print(runs[-1], file=sys.stderr)
    print(summary(runs, args))


def one_run(args: argparse.Namespace, reports: Reports, with_policies: bool) -> Run:
    with tempfile.TemporaryDirectory(prefix="bench-policy-cost-") as tmp:
        db = Path(tmp) / "db.sqlite"
        proc, address = start_controller(Path(tmp), "--report-interval", str(args.report_interval))
        try:
            args.with_policies = with_policies
            rate, cpu, sim_cpu, alerts = asyncio.run(measure(address, proc.pid, db, reports, args))
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:  # still busy with the backlog
                proc.kill()
                proc.wait()
    return Run(
        100 if with_policies else 0, rate, cpu, sim_cpu, alerts, args.agents * args.workloads
    )


def summary(runs: list[Run], args: argparse.Namespace) -> str:
    offered = args.agents / args.report_interval
    lines = [
        f"{args.agents} agents, {args.workloads} workloads each, a report every "
        f"{args.report_interval} s ({offered:,.0f} reports/s offered); "
        f"{args.seconds:.0f} s window after {args.warmup:.0f} s warm-up",
        "",
        "| policies | reports stored/s (median) | runs | controller CPU (median) | runs "
        "| CPU per report | simulator CPU | alerts (window start → end) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    medians = {}
    for count in sorted({r.policies for r in runs}):
        mine = [r for r in runs if r.policies == count]
        rate = statistics.median(r.reports_per_s for r in mine)
        cpu = statistics.median(r.controller_cpu for r in mine)
        per_report = statistics.median(r.controller_cpu / r.reports_per_s for r in mine)
        medians[count] = (rate, cpu, per_report)
        lines.append(
            f"| {count} | {rate:,.0f}/s | {' · '.join(f'{r.reports_per_s:,.0f}' for r in mine)} "
            f"| {cpu:.0%} | {' · '.join(f'{r.controller_cpu:.0%}' for r in mine)} "
            f"| {per_report * 1000:.2f} ms "
            f"| {statistics.median(r.simulator_cpu for r in mine):.0%} "
            f"| {' · '.join(f'{a:,} → {b:,}' for a, b in (r.alerts for r in mine))} |"
        )
    if len(medians) < 2:
        return "\n".join(lines)
    (rate0, cpu0, per0), (rate1, cpu1, per1) = medians[0], medians[100]
    lines += [
        "",
        f"ratios (100 policies / none): ingest {rate1 / rate0:.2f}, CPU {cpu1 / cpu0:.2f}, "
        f"CPU per report {per1 / per0:.2f}; policy evaluation per report "
        f"{(per1 - per0) * 1000:.2f} ms of CPU ({(per1 - per0) * 1e6 / args.workloads:.0f} µs "
        "per workload)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
