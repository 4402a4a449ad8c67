"""Soak: controller and agent memory and CPU over a long run at 1,000 agents.

Starts a real controller process (SQLite, open mode on loopback), one real agent process
(8 simulated GPUs from the NVML test library, 8 ``sleep`` processes holding GPU contexts)
and N simulated agents, each holding one stream and reporting 8 GPUs, in this process
(bench/simulator.py). Every --correction-every seconds it creates a pause through the
control API and, once the pause has finished (or after 30 s), resumes it. The pause is sent
to every node, but it is scoped to the 8 ``sleep`` workloads by their ids: the real agent
discovers every GPU or model-serving process of this host, and ``--all`` would pause them too
(give --scope-all on a host that runs nothing else). Every --sample-every seconds it reads
the RSS and CPU time of the controller, the real agent and this process from /proc, and the
number of GPU-sample rows the controller has stored.

    .venv/bin/python bench/soak.py --agents 1000 --minutes 30 --json soak.json

Progress goes to stderr, one line per sample. At the end (also after Ctrl-C) every process
is stopped and a Markdown table with a summary is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))

import daemons
from agent_cost import cpu_seconds, rss_mib
from simulator import SimStats, run_fleet

from backstop.api.v1 import control_pb2, control_pb2_grpc, types_pb2
from backstop.simgpu import FakeNvml, FakeProcess, default_gpus

GPUS = 8
STEP_TIMEOUT_S = 30.0
"""How long to wait for a pause (or its resume) to finish before going on."""
STOP_GRACE_S = 10.0
TABLE_MINUTES = (0, 1, 5, 10, 15, 20, 25, 30)
AGENT_NODE = "soak-agent"


class SoakFailed(Exception):
    """A process under test died or the fleet did not come up."""


@dataclass
class Sample:
    t_s: float
    controller_rss_mib: float
    controller_cpu_s: float
    controller_cpu_pct: float | None
    controller_threads: int
    controller_fds: int
    agent_rss_mib: float
    agent_cpu_s: float
    agent_cpu_pct: float | None
    sim_rss_mib: float
    sim_cpu_s: float
    sim_cpu_pct: float | None
    reports_sent: int
    sim_acks: int
    sim_errors: int
    sim_connects: int
    stored_gpu_rows: int | None
    db_mib: float
    corrections_done: int
    corrections_completed: int


@dataclass
class CorrectionRecord:
    t_s: float
    action: str
    correction_id: str
    state: str
    targets: int
    applied: int
    target_states: dict[str, int]
    agent_target: str
    """The state of the real agent's target."""
    last_ack_ms: float | None
    wall_ms: float
    error: str = ""


@dataclass
class Result:
    config: dict[str, Any]
    samples: list[Sample] = field(default_factory=list)
    corrections: list[CorrectionRecord] = field(default_factory=list)
    sim: SimStats | None = None
    agent_workloads: int | None = None
    """Workloads the real agent found on the host at the start (ours and any others)."""
    scope_workloads: list[str] = field(default_factory=list)
    """The ids of our sleep workloads, the pause's scope (empty: --scope-all)."""
    failure: str = ""
    interrupted: bool = False
    stopped: dict[str, str] = field(default_factory=dict)


# --- processes -------------------------------------------------------------------------


def threads_and_fds(pid: int) -> tuple[int, int]:
    threads = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            threads = int(line.split()[1])
    return threads, len(os.listdir(f"/proc/{pid}/fd"))


def stored_gpu_rows(db: Path) -> int | None:
    """Rows in gpu_samples (the highest rowid: O(log n); nothing is pruned within 24 h)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2)) as conn:
            row = conn.execute("SELECT max(id) FROM gpu_samples").fetchone()
    except sqlite3.Error:
        return None
    return int(row[0] or 0)


def db_mib(db: Path) -> float:
    total = 0
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            total += Path(f"{db}{suffix}").stat().st_size
    return total / 2**20


def stop(proc: subprocess.Popen[bytes], *, gentle: bool) -> str:
    """Stop a process and its process group; say how it ended."""
    if proc.poll() is not None:
        how = f"had already exited ({proc.returncode})"
    elif gentle:
        started = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE_S)
            how = f"exited with {proc.returncode}, {time.monotonic() - started:.1f} s after SIGTERM"
        except subprocess.TimeoutExpired:
            how = f"still running {STOP_GRACE_S:g} s after SIGTERM; killed"
    else:
        how = "killed"
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # whatever is left in its group
    proc.wait()
    return how


def start_controller(
    work: Path, report_interval: float, launch: list[subprocess.Popen[bytes]]
) -> tuple[subprocess.Popen[bytes], str]:
    try:
        proc, address = daemons.start_controller(
            work, "--report-interval", str(report_interval), "--ack-timeout", "60"
        )
    except daemons.DaemonDidNotStart as exc:
        raise SoakFailed(str(exc) + log_tail(work / "controller.log")) from exc
    launch.append(proc)
    return proc, address


def start_agent(
    work: Path, address: str, report_interval: float, gpus: FakeNvml
) -> subprocess.Popen[bytes]:
    return daemons.start_agent(
        work, address, AGENT_NODE, gpus.env(), "--report-interval", str(report_interval)
    )


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return ""
    return f"\n--- last lines of {path.name} ---\n" + "\n".join(text) if text else ""


# --- the run ---------------------------------------------------------------------------


def _name(enum: Any, value: int, prefix: str) -> str:
    return str(enum.Name(value)).removeprefix(prefix).lower()


async def finish(stub: Any, cid: str, timeout_s: float) -> types_pb2.Correction:
    """Follow a correction until it is terminal or ``timeout_s`` passed; then read it."""
    with contextlib.suppress(grpc.aio.AioRpcError):
        async for _ in stub.WatchCorrection(
            control_pb2.GetCorrectionRequest(correction_id=cid), timeout=timeout_s
        ):
            pass  # the stream ends when the correction is terminal
    correction: types_pb2.Correction = await stub.GetCorrection(
        control_pb2.GetCorrectionRequest(correction_id=cid)
    )
    return correction


async def one_correction(
    stub: Any, t0: float, action: str, scope: types_pb2.Scope, pause_id: str = ""
) -> CorrectionRecord:
    started = time.monotonic()
    t_s = started - t0
    try:
        if action == "pause":
            created = await stub.CreateCorrection(
                control_pb2.CreateCorrectionRequest(
                    action=types_pb2.ACTION_PAUSE,
                    scope=scope,
                    reason="soak benchmark",
                    issuer="soak",
                    ttl_s=600,
                ),
                timeout=STEP_TIMEOUT_S,
            )
        else:
            created = await stub.ResumeCorrection(
                control_pb2.ResumeCorrectionRequest(
                    correction_id=pause_id, reason="soak benchmark", issuer="soak"
                ),
                timeout=STEP_TIMEOUT_S,
            )
        cid = created.spec.correction_id
        final = await finish(stub, cid, STEP_TIMEOUT_S)
    except grpc.aio.AioRpcError as exc:
        return CorrectionRecord(
            t_s, action, "", "error", 0, 0, {}, "", None, (time.monotonic() - started) * 1000,
            f"{exc.code().name}: {exc.details()}",
        )  # fmt: skip
    created_at = final.spec.created_at_s
    applied = [t for t in final.targets if t.state == types_pb2.TARGET_STATE_APPLIED]
    states = Counter(_name(types_pb2.TargetState, t.state, "TARGET_STATE_") for t in final.targets)
    agent = [t for t in final.targets if t.node_id == AGENT_NODE]
    return CorrectionRecord(
        t_s=round(t_s, 1),
        action=action,
        correction_id=cid,
        state=_name(types_pb2.CorrectionState, final.state, "CORRECTION_STATE_"),
        targets=len(final.targets),
        applied=len(applied),
        target_states=dict(states),
        agent_target=(
            _name(types_pb2.TargetState, agent[0].state, "TARGET_STATE_") + f": {agent[0].message}"
            if agent
            else "not a target"
        ),
        last_ack_ms=(
            round(max(t.updated_at_s - created_at for t in applied) * 1000, 1) if applied else None
        ),
        wall_ms=round((time.monotonic() - started) * 1000, 1),
    )


async def correction_loop(stub: Any, every_s: float, t0: float, end: float, result: Result) -> None:
    scope = (
        types_pb2.Scope(workload_ids=result.scope_workloads)
        if result.scope_workloads
        else types_pb2.Scope(all=True)
    )
    k = 1
    while t0 + k * every_s < end:
        await asyncio.sleep(max(0.0, t0 + k * every_s - time.monotonic()))
        pause = await one_correction(stub, t0, "pause", scope)
        result.corrections.append(pause)
        if pause.correction_id:
            resume = await one_correction(stub, t0, "resume", scope, pause.correction_id)
            result.corrections.append(resume)
        k = max(k + 1, math.floor((time.monotonic() - t0) / every_s) + 1)


def check_alive(procs: dict[str, subprocess.Popen[bytes]], work: Path, t_s: float) -> None:
    for name, proc in procs.items():
        if proc.poll() is not None:
            raise SoakFailed(
                f"the {name} exited ({proc.returncode}) at {t_s:.0f} s"
                + log_tail(work / f"{name}.log")
            )


async def wait_connected(
    stub: Any,
    count: int,
    workers: set[int],
    procs: dict[str, subprocess.Popen[bytes]],
    work: Path,
) -> tuple[list[str], int]:
    """Wait until ``count`` nodes hold a stream and the real agent reports our workers.

    Returns the ids of the workers' workloads and how many workloads the agent reports.
    """
    deadline = time.monotonic() + 180
    while True:
        check_alive(procs, work, 0)
        nodes = (await stub.ListNodes(control_pb2.ListNodesRequest(), timeout=30)).nodes
        up = sum(n.connected for n in nodes)
        workloads = []
        if any(n.node_id == AGENT_NODE and n.connected for n in nodes):
            request = control_pb2.ListWorkloadsRequest(node_id=AGENT_NODE)
            workloads = list((await stub.ListWorkloads(request, timeout=30)).workloads)
        ours = sorted(w.workload_id for w in workloads if w.root_pid in workers)
        if up >= count and len(ours) == len(workers):
            return ours, len(workloads)
        if time.monotonic() > deadline:
            raise SoakFailed(
                f"after 180 s: {up} of {count} nodes connected; the real agent reports "
                f"{len(ours)} of our {len(workers)} workloads"
            )
        await asyncio.sleep(1.0)


def _pct(cpu_s: float, prev_cpu_s: float | None, dt: float) -> float | None:
    if prev_cpu_s is None or dt <= 0:
        return None
    return round((cpu_s - prev_cpu_s) / dt * 100, 2)


def take_sample(
    t_s: float,
    prev: Sample | None,
    controller: int,
    agent: int,
    db: Path,
    stats: SimStats,
    result: Result,
) -> Sample:
    me = os.getpid()
    dt = t_s - prev.t_s if prev else 0.0
    threads, fds = threads_and_fds(controller)
    ctl_cpu, agent_cpu, sim_cpu = cpu_seconds(controller), cpu_seconds(agent), cpu_seconds(me)
    return Sample(
        t_s=round(t_s, 1),
        controller_rss_mib=round(rss_mib(controller), 1),
        controller_cpu_s=ctl_cpu,
        controller_cpu_pct=_pct(ctl_cpu, prev.controller_cpu_s if prev else None, dt),
        controller_threads=threads,
        controller_fds=fds,
        agent_rss_mib=round(rss_mib(agent), 1),
        agent_cpu_s=agent_cpu,
        agent_cpu_pct=_pct(agent_cpu, prev.agent_cpu_s if prev else None, dt),
        sim_rss_mib=round(rss_mib(me), 1),
        sim_cpu_s=sim_cpu,
        sim_cpu_pct=_pct(sim_cpu, prev.sim_cpu_s if prev else None, dt),
        reports_sent=stats.reports,
        sim_acks=stats.acks,
        sim_errors=stats.errors,
        sim_connects=stats.connects,
        stored_gpu_rows=stored_gpu_rows(db),
        db_mib=round(db_mib(db), 1),
        corrections_done=len(result.corrections),
        corrections_completed=sum(c.state == "completed" for c in result.corrections),
    )


def _show(value: float | None, unit: str, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def _count(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def progress(s: Sample) -> None:
    print(
        f"[{s.t_s:7.1f} s] controller {s.controller_rss_mib:6.1f} MiB "
        f"{_show(s.controller_cpu_pct, ' %'):>7} ({s.controller_threads} threads, "
        f"{s.controller_fds} fds) | agent {s.agent_rss_mib:5.1f} MiB "
        f"{_show(s.agent_cpu_pct, ' %', 2):>7} | simulator {s.sim_rss_mib:6.1f} MiB "
        f"{_show(s.sim_cpu_pct, ' %'):>7} | reports {s.reports_sent:,} | rows "
        f"{_count(s.stored_gpu_rows)} | db "
        f"{s.db_mib:.0f} MiB | corrections {s.corrections_completed}/{s.corrections_done} "
        f"| errors {s.sim_errors}",
        file=sys.stderr,
        flush=True,
    )


async def soak(
    args: argparse.Namespace,
    workers: set[int],
    procs: dict[str, subprocess.Popen[bytes]],
    address: str,
    work: Path,
    result: Result,
) -> None:
    db = work / "db.sqlite"
    tasks, channels, stats = await run_fleet(
        address, args.agents, "stream", prefix="sim", report_interval_s=args.report_interval
    )
    result.sim = stats
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = control_pb2_grpc.ControlServiceStub(channel)
            up = time.monotonic()
            ours, result.agent_workloads = await wait_connected(
                stub, args.agents + 1, workers, procs, work
            )
            if not args.scope_all:
                result.scope_workloads = ours
            print(
                f"{args.agents} simulated agents and the real agent connected in "
                f"{time.monotonic() - up:.1f} s; the real agent reports "
                f"{result.agent_workloads} workloads, {len(ours)} of them ours",
                file=sys.stderr,
            )
            duration = args.minutes * 60
            t0 = time.monotonic()
            end = t0 + duration
            marks = [i * args.sample_every for i in range(math.ceil(duration / args.sample_every))]
            marks.append(duration)
            corrections = asyncio.create_task(
                correction_loop(stub, args.correction_every, t0, end, result)
            )
            try:
                prev: Sample | None = None
                for mark in marks:
                    await asyncio.sleep(max(0.0, t0 + mark - time.monotonic()))
                    if corrections.done():
                        corrections.result()  # raise what stopped it
                    t_s = time.monotonic() - t0
                    check_alive(procs, work, t_s)
                    prev = take_sample(
                        t_s, prev, procs["controller"].pid, procs["agent"].pid, db, stats, result
                    )
                    result.samples.append(prev)
                    progress(prev)
            finally:
                corrections.cancel()
                await asyncio.gather(corrections, return_exceptions=True)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for ch in channels:
            await ch.close()


# --- the report ------------------------------------------------------------------------


def table_rows(samples: list[Sample]) -> list[Sample]:
    if len(samples) <= 16:
        return samples
    picked: list[Sample] = []
    last_minute = samples[-1].t_s / 60
    for minute in [m for m in TABLE_MINUTES if m <= last_minute] + [last_minute]:
        nearest = min(samples, key=lambda s: abs(s.t_s / 60 - minute))
        if nearest not in picked:
            picked.append(nearest)
    return picked


def slope_per_10_min(samples: list[Sample], key: str) -> float | None:
    if len(samples) < 2:
        return None
    fit = statistics.linear_regression([s.t_s for s in samples], [getattr(s, key) for s in samples])
    return fit.slope * 600


def mean_cpu(samples: list[Sample], key: str) -> float | None:
    if len(samples) < 2 or samples[-1].t_s <= samples[0].t_s:
        return None
    return (
        (getattr(samples[-1], key) - getattr(samples[0], key))
        / (samples[-1].t_s - samples[0].t_s)
        * 100
    )


def report(args: argparse.Namespace, result: Result) -> None:
    samples = result.samples
    print(
        f"Soak: {args.agents:,} simulated agents + 1 real agent ({GPUS} GPUs), reports every "
        f"{args.report_interval:g} s, a pause and its resume sent to every node every "
        f"{args.correction_every:g} s (scope: "
        + ("--all" if args.scope_all else f"the real agent's {GPUS} sleep workloads")
        + f"), {args.minutes:g} min, sampled every {args.sample_every:g} s."
    )
    print()
    print(
        "| minute | controller RSS | controller CPU | agent RSS | agent CPU | simulator RSS "
        "| reports sent | GPU rows stored | DB size |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for s in table_rows(samples):
        print(
            f"| {s.t_s / 60:.1f} | {s.controller_rss_mib:.1f} MiB "
            f"| {_show(s.controller_cpu_pct, ' %')} | {s.agent_rss_mib:.1f} MiB "
            f"| {_show(s.agent_cpu_pct, ' %', 2)} | {s.sim_rss_mib:.1f} MiB "
            f"| {s.reports_sent:,} | {_count(s.stored_gpu_rows)} | {s.db_mib:.0f} MiB |"
        )
    print()
    if samples:
        fit_from = args.fit_after * 60
        fitted = [s for s in samples if s.t_s >= fit_from]
        if len(fitted) < 3:
            fit_from = samples[-1].t_s / 2
            fitted = [s for s in samples if s.t_s >= fit_from]
        window = f"fit over {fit_from / 60:.1f} to {samples[-1].t_s / 60:.1f} min"
        for label, key in (
            ("Controller RSS", "controller_rss_mib"),
            ("Agent RSS", "agent_rss_mib"),
            ("Simulator RSS", "sim_rss_mib"),
        ):
            values = [getattr(s, key) for s in samples]
            slope = slope_per_10_min(fitted, key)
            print(
                f"- **{label}:** {values[0]:.1f} → {values[-1]:.1f} MiB (max {max(values):.1f}"
                f" MiB); growth {_show(slope, ' MiB', 2)} per 10 min ({window})."
            )
        print(
            f"- **Mean CPU** (% of one core): controller "
            f"{_show(mean_cpu(samples, 'controller_cpu_s'), ' %')}, agent "
            f"{_show(mean_cpu(samples, 'agent_cpu_s'), ' %', 2)}, simulator "
            f"{_show(mean_cpu(samples, 'sim_cpu_s'), ' %')}."
        )
        first, last = samples[0], samples[-1]
        print(
            f"- **Controller threads / fds:** {first.controller_threads} → "
            f"{last.controller_threads} / {first.controller_fds} → {last.controller_fds}."
        )
    done = result.corrections
    completed = [c for c in done if c.state == "completed"]
    acks = [c.last_ack_ms for c in done if c.last_ack_ms is not None]
    by_action = Counter(c.action for c in completed)
    print(
        f"- **Corrections:** {len(completed)} of {len(done)} completed "
        f"({by_action['pause']} pauses, {by_action['resume']} resumes); last ack "
        + (f"median {statistics.median(acks):.0f} ms, max {max(acks):.0f} ms." if acks else "n/a.")
    )
    for c in done:
        if c.state != "completed":
            print(
                f"  - {c.action} {c.correction_id or '(not created)'} at {c.t_s:.0f} s: "
                f"{c.state} {c.target_states} {c.error}; real agent: {c.agent_target}"
            )
    agent_states = Counter(c.agent_target.split(":")[0] for c in done if c.correction_id)
    print(
        f"- **Real agent's targets:** {dict(agent_states) or 'none'}; it found "
        f"{result.agent_workloads} workloads on this host at the start, {GPUS} of them ours."
    )
    if result.sim is not None:
        sim = result.sim
        print(
            f"- **Simulator:** {sim.reports:,} reports sent, {sim.acks:,} acks, "
            f"{sim.errors} stream errors, {sim.connects:,} connects for {args.agents:,} agents."
        )
    if result.stopped:
        print(
            "- **Stop:** "
            + "; ".join(f"{name} {how}" for name, how in result.stopped.items())
            + "."
        )
    if result.interrupted:
        print("- **Interrupted** before the end; the figures cover the run until then.")
    if result.failure:
        print(f"- **Failed:** {result.failure.splitlines()[0]}")


def write_json(path: Path, result: Result) -> None:
    data = {
        "config": result.config,
        "samples": [asdict(s) for s in result.samples],
        "corrections": [asdict(c) for c in result.corrections],
        "simulator": (
            {k: v for k, v in asdict(result.sim).items() if k != "ack_times"} if result.sim else {}
        ),
        "agent_workloads": result.agent_workloads,
        "scope_workloads": result.scope_workloads,
        "stopped": result.stopped,
        "interrupted": result.interrupted,
        "failure": result.failure,
    }
    path.write_text(json.dumps(data, indent=2) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=1000, help="simulated agents")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--sample-every", type=float, default=30.0, help="seconds")
    parser.add_argument("--report-interval", type=float, default=5.0, help="seconds")
    parser.add_argument("--correction-every", type=float, default=300.0, help="seconds")
    parser.add_argument(
        "--fit-after", type=float, default=5.0, help="minutes left out of the growth fit"
    )
    parser.add_argument(
        "--scope-all",
        action="store_true",
        help="pause --all: also every GPU or model-serving process the real agent finds here",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="raw samples")
    args = parser.parse_args()
    if min(args.agents, args.minutes, args.sample_every, args.report_interval) <= 0:
        parser.error("--agents, --minutes, --sample-every and --report-interval must be > 0")
    if args.correction_every <= 0:
        parser.error("--correction-every must be > 0")
    result = Result(config=vars(args) | {"json": str(args.json) if args.json else None})
    # SIGTERM (e.g. from `timeout`) takes the same way out as Ctrl-C: through the finally
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    work = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    launched: list[subprocess.Popen[bytes]] = []
    named: dict[str, subprocess.Popen[bytes]] = {}
    keep = False
    try:
        sleeper = shutil.which("sleep") or "/bin/sleep"
        seconds = str(int(args.minutes * 60 + 3600))
        workers = []
        for _ in range(GPUS):
            workers.append(subprocess.Popen([sleeper, seconds], start_new_session=True))
            launched.append(workers[-1])
        gpus = FakeNvml(work / "gpu")
        gpus.write(
            default_gpus(GPUS), [FakeProcess(i, w.pid, 2**30) for i, w in enumerate(workers)]
        )
        controller, address = start_controller(work, args.report_interval, launched)
        named["controller"] = controller
        named["agent"] = start_agent(work, address, args.report_interval, gpus)
        launched.append(named["agent"])
        asyncio.run(soak(args, {w.pid for w in workers}, named, address, work, result))
    except KeyboardInterrupt:
        result.interrupted = True
    except SoakFailed as exc:
        result.failure = str(exc)
        keep = True
        print(f"soak: {exc}", file=sys.stderr)
    except Exception:
        keep = True
        raise
    finally:
        # a second Ctrl-C must not leave processes behind
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for name in ("agent", "controller"):
            if name in named:
                result.stopped[name] = stop(named[name], gentle=True)
        for proc in launched:
            if proc not in named.values():
                stop(proc, gentle=False)
        if keep:
            (work / "db.sqlite").unlink(missing_ok=True)  # can be large; the logs stay
            print(f"soak: logs kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
        if args.json is not None:
            write_json(args.json, result)
    report(args, result)
    if result.failure:
        return 1
    return 130 if result.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
