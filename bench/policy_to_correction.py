"""Policy to correction: from a workload starting with a watched model to its pause applied.

Real daemons (tests/support/cluster.py: a controller on SQLite and one agent, open mode on
loopback, the agent reading a simulated GPU through the NVML test library). A policy watches a
model by its identity (``match: model_id``, ``action: pause``). Each trial writes a fresh copy
of the watched weights (so the agent identifies them cold), starts a stand-in model server
holding them and polls ``/proc/PID/stat`` every 5 ms until the
process is stopped (state ``T``). The time runs from just before the server is started to the
poll that sees it stopped. Two stand-in servers: ``silent`` (tests/support/shard_server.py, as
the end-to-end test uses: it listens and never answers, so the agent's serving probe of the new
workload's port waits out its two 0.5 s timeouts within that sampling pass) and ``http``
(the same with ``--http``: it answers every request at once, as a real server does).

The breakdown is read from what the daemons recorded, all on the same host clock:

- *sampled*: the sample time (``sampled_at_s``, the agent's clock) of the report that first
  named the workload with its model: the agent's discovery and identification, and the wait
  for its next sampling pass;
- *stored*: the controller stored that report (the model sighting's first-seen time): the
  wait for the report to be sent, the transport and the write;
- *judged*: the policy's correction was created (its ``created_at_s``: the evaluation and the
  admission);
- *received*: the agent's log line "applying correction" (dispatch, transport, the checks of
  the command);
- *applied*: the agent's log line "correction applied" (the signal sent);
- *seen*: the benchmark's poll saw the state ``T``.

    PYTHONPATH=src .venv/bin/python bench/policy_to_correction.py --intervals 0.5 1 --trials 10 \
        --servers silent http

Prints one Markdown table per interval (median, p90, max of each stage) and a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from safetensors.numpy import save_file
from time_to_halt import percentile

from backstop.agent.weights.identify import identify
from backstop.simgpu import FakeNvml, default_gpus
from tests.support.cluster import LocalCluster, proc_state, wait_for

CONFIG = {"architectures": ["WatchedForCausalLM"], "model_type": "watched", "hidden_size": 64}
STAGES = ("sampled", "stored", "judged", "received", "applied", "seen")


def write_model(directory: Path) -> Path:
    """The watched weights (always the same tensors) with a config, in ``directory``."""
    rng = np.random.default_rng(4411)
    tensors = {
        "model.embed_tokens.weight": rng.standard_normal((256, 64), dtype=np.float32),
        "lm_head.weight": rng.standard_normal((256, 64), dtype=np.float32),
    }
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps(CONFIG))
    save_file(tensors, str(directory / "model.safetensors"))
    return directory / "model.safetensors"


@dataclass
class Trial:
    total_s: float
    marks: dict[str, float]
    """Stage -> seconds after the start."""


def _log_times(path: Path, msg: str) -> dict[str, float]:
    """correction id -> time of the first JSON log line ``msg`` about it in ``path``."""
    found: dict[str, float] = {}
    for line in path.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        if entry.get("msg") == msg and "correction_id" in entry:
            stamp = datetime.fromisoformat(entry["ts"].replace("Z", "+00:00")).timestamp()
            found.setdefault(entry["correction_id"], stamp)
    return found


SERVERS = {
    "silent": [],
    "http": ["--http"],
}
"""The stand-in servers: ``silent`` listens and never answers (the agent's serving probe waits
out its timeout on a new workload's port), ``http`` answers every request at once."""


def run_interval(workdir: Path, interval: float, trials: int, server: str) -> list[Trial]:
    cluster = LocalCluster(workdir)
    try:
        every = str(interval)
        cluster.start_controller("127.0.0.1:0", "--report-interval", every)
        gpu = FakeNvml(workdir / "gpu")
        gpu.write(default_gpus(1))
        cluster.start_agent("node-b", gpu.env(), "--report-interval", every)
        wait_for(lambda: cluster.json("nodes") or None, 30, "the agent")
        watched = identify([write_model(workdir / "original")]).model_id
        policy = workdir / "watch.yaml"
        policy.write_text(
            "name: watch-model\n"
            "description: benchmark\n"
            f'match:\n  model_id: "{watched[:16]}"\n'
            "action: pause\nseverity: critical\nmax_targets_per_hour: 1000\n"
        )
        assert cluster.json("policy", "apply", str(policy))["state"] == "active"
        time.sleep(2 * interval + 1)
        db = sqlite3.connect(workdir / "backstop.db")
        results = []
        for n in range(trials):
            model_dir = workdir / f"copy-{n}"
            write_model(model_dir)
            port_file = workdir / f"server-{n}.port"
            argv = [sys.executable, "-m", "tests.support.shard_server", str(model_dir)]
            argv += [str(port_file), *SERVERS[server]]
            started = time.time()
            proc = cluster.spawn(f"server-{n}", argv)
            deadline = time.monotonic() + 30
            while proc_state(proc.pid) != "T":
                if time.monotonic() > deadline:
                    raise SystemExit(f"trial {n}: not paused in 30 s\n{cluster.logs()}")
                time.sleep(0.005)
            seen = time.time()
            results.append(_trial(cluster, db, watched, started, seen))
            print(f"interval {interval} s, trial {n}: {seen - started:.3f} s", file=sys.stderr)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            shutil.rmtree(model_dir)
            time.sleep(1 + random.uniform(0, interval))  # start at any phase of the report cycle
        return results
    finally:
        cluster.stop()


def _trial(
    cluster: LocalCluster, db: sqlite3.Connection, watched: str, started: float, seen: float
) -> Trial:
    def rows() -> tuple[float, str, float] | None:
        sighting = db.execute(
            "SELECT first_seen_s FROM model_sightings WHERE model_id = ? AND first_seen_s >= ?"
            " ORDER BY first_seen_s LIMIT 1",
            (watched, started),
        ).fetchone()
        correction = db.execute(
            "SELECT correction_id, created_at_s FROM corrections WHERE created_at_s >= ?"
            " ORDER BY created_at_s LIMIT 1",
            (started,),
        ).fetchone()
        if sighting is None or correction is None:
            return None
        return float(sighting[0]), str(correction[0]), float(correction[1])

    stored, cid, judged = wait_for(rows, 10, "the stored sighting and correction")
    (sampled,) = db.execute(
        "SELECT MAX(sampled_at_s) FROM gpu_samples WHERE sampled_at_s <= ?", (stored,)
    ).fetchone()
    agent_log = cluster.workdir / "agent-node-b.log"
    received = wait_for(lambda: _log_times(agent_log, "applying correction").get(cid), 10)
    applied = wait_for(lambda: _log_times(agent_log, "correction applied").get(cid), 10)
    marks = {
        "sampled": sampled,
        "stored": stored,
        "judged": judged,
        "received": received,
        "applied": applied,
    }
    marks = {k: v - started for k, v in marks.items()} | {"seen": seen - started}
    return Trial(seen - started, marks)


def table(interval: float, server: str, trials: list[Trial]) -> str:
    lines = [
        f"report interval {interval} s, {server} server, {len(trials)} trials "
        f"(target {2 * interval + 1:.1f} s):",
        "",
        "| from the start to | median | p90 | max | stage alone: median | p90 | max |",
        "|---|---|---|---|---|---|---|",
    ]
    before = dict.fromkeys(range(len(trials)), 0.0)
    for stage in STAGES:
        at = [t.marks[stage] for t in trials]
        alone = [t.marks[stage] - before[i] for i, t in enumerate(trials)]
        before = {i: t.marks[stage] for i, t in enumerate(trials)}
        lines.append(
            f"| {stage} | {_ms(statistics.median(at))} | {_ms(percentile(at, 90))} "
            f"| {_ms(max(at))} | {_ms(statistics.median(alone))} "
            f"| {_ms(percentile(alone, 90))} | {_ms(max(alone))} |"
        )
    total = [t.total_s for t in trials]
    within = sum(1 for x in total if x <= 2 * interval + 1)
    lines += ["", f"{within} of {len(trials)} within the target; all times: "]
    lines.append(", ".join(f"{x:.2f}" for x in sorted(total)) + " s")
    return "\n".join(lines)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intervals", type=float, nargs="+", default=[0.5, 1.0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--servers", nargs="+", choices=sorted(SERVERS), default=["silent"])
    args = parser.parse_args()
    out = []
    for server in args.servers:
        for interval in args.intervals:
            with tempfile.TemporaryDirectory(prefix="bench-policy-") as tmp:
                trials = run_interval(Path(tmp), interval, args.trials, server)
                out.append(table(interval, server, trials))
    print("\n\n".join(out))


if __name__ == "__main__":
    main()
