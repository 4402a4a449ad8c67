"""GPU use no process in the agent's view explains is shown, and can be throttled, never
signalled: a process NVML lists that the agent cannot see (the NVML test library, through real
pynvml, in a real agent), end to end through the real CLI."""

from __future__ import annotations

from typing import Any

import pytest

from backstop.simgpu import FakeProcess, default_gpus
from tests.e2e.conftest import Nodes
from tests.support.cluster import wait_for

pytestmark = pytest.mark.e2e

OUT_OF_VIEW = 4_000_000  # above any pid_max: another PID namespace's number, or gone
GPU0, GPU1 = (g.uuid for g in default_gpus(2))


def _hidden(nodes: Nodes) -> dict[str, Any] | None:
    for w in nodes.cluster.json("workloads", "--node", "node-a"):
        if w["unattributed"]:
            return dict(w)
    return None


def test_gpu_use_out_of_view_is_reported_and_only_its_gpu_is_capped(nodes: Nodes) -> None:
    cluster = nodes.cluster
    processes = [FakeProcess(0, nodes.a.pid, 8 << 30), FakeProcess(1, OUT_OF_VIEW, 6 << 30)]
    nodes.gpu_a.write(default_gpus(2), processes)
    hidden = wait_for(lambda: _hidden(nodes), 20, "the unattributed GPU use")
    assert hidden["root_pid"] == OUT_OF_VIEW  # the pid as NVML reports it
    assert hidden["pids"] == []
    assert "no such process in the agent's view" in hidden["unattributed"]
    assert hidden["labels"]["backstop.io/kind"] == "unattributed"
    assert hidden["fingerprint"]["gpus"] == [
        {"gpu_uuid": GPU1, "used_memory_bytes": 6 << 30, "sm_util_pct": 0}  # no sample: idle
    ]

    table = cluster.cli("workloads", "--node", "node-a")
    assert "unattributed" in table.out
    (node_a,) = [n for n in cluster.json("nodes") if n["node_id"] == "node-a"]
    assert node_a["unattributed_count"] == 1
    assert "UNATTRIBUTED" in cluster.cli("nodes").out

    paused = cluster.cli("pause", "--node", "node-a", "--reason", "hold node-a", "--wait")
    assert paused.code == 1, paused.out + paused.err  # true: one use could not be paused
    status = cluster.json("status", paused.out.split()[0])
    details = [o["detail"] for t in status["targets"] for o in t["outcomes"]]
    assert any("never signalled" in d for d in details), details
    assert nodes.a.ask(timeout_s=1.0) is None  # the workload in view was paused all the same
    assert cluster.cli("resume", paused.out.split()[0], "--wait").code == 0

    capped = cluster.cli(
        "throttle", "--node", "node-a", "--unattributed",
        "--power-fraction", "0.5", "--reason", "cap what we cannot see", "--wait",
    )  # fmt: skip
    assert capped.code == 0, capped.out + capped.err
    assert set(nodes.gpu_a.power_limits()) == {GPU1}  # its GPU only
    assert cluster.cli("resume", capped.out.split()[0], "--wait").code == 0
