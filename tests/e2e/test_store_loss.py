"""A controller restarted on an empty store (lost, or restored from nothing) still commands
its agents at once: the agent's replay protection rests on the signed corrections it handled,
not on the controller's delivery sequence, which starts again at 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import start_model_in_cgroup
from tests.support.cgroups import scratch_cgroup
from tests.support.cluster import LocalCluster, wait_for

pytestmark = pytest.mark.e2e


def frozen(cgroup: Path) -> bool:
    return "frozen 1" in (cgroup / "cgroup.events").read_text()


def test_a_controller_on_an_empty_store_is_obeyed(cluster: LocalCluster) -> None:
    with scratch_cgroup("backstop-e2e") as root:
        address = cluster.start_controller()
        model_cgroup = root / "node-a" / "model"
        model_cgroup.mkdir(parents=True)
        model = start_model_in_cgroup(cluster, "model", model_cgroup)
        prefix = "/" + str((root / "node-a").relative_to(root.parent))
        cluster.start_agent("node-a", None, "--cgroup-prefix", prefix)
        cluster.wait_for_workload(model.pid)

        for _ in range(2):  # a few commands, so the agent has seen sequences above 1
            paused = cluster.cli("pause", "--all", "--reason", "before", "--yes", "--wait")
            assert paused.code == 0, paused.err + paused.out
            assert frozen(model_cgroup)
            resumed = cluster.cli("resume", paused.out.split()[0], "--wait")
            assert resumed.code == 0, resumed.err + resumed.out
            wait_for(lambda: model.ask() is not None, 15, "the model to answer again")
        state = json.loads((cluster.workdir / "state-node-a" / "agent-state.json").read_text())
        assert state["last_command_sequence"] == 4

        cluster.kill_controller()
        for db in cluster.workdir.glob("backstop.db*"):
            db.unlink()
        cluster.start_controller(address)
        cluster.wait_for_workload(model.pid, timeout_s=30)

        paused = cluster.cli("pause", "--all", "--reason", "after", "--yes", "--wait", "-o", "json")
        assert paused.code == 0, paused.err + paused.out
        [target] = paused.json()["targets"]
        assert target["state"] == "applied"
        assert int(target["sequence"]) == 1
        assert frozen(model_cgroup)
        assert model.ask(timeout_s=1.0) is None
