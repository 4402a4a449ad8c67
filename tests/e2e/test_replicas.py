"""Several controller replicas on one PostgreSQL: a correction reaches every agent, whichever
replica issued it and whichever replica holds the agent's stream, and survives a replica dying.

Real processes throughout: two controllers on one real PostgreSQL database, two agents (node-a
on replica r1; node-b on r2, with r1 as its fallback), real model servers, the real CLI.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Replicas
from tests.support.cluster import LocalCluster, proc_state, tree, wait_for

pytestmark = pytest.mark.e2e


def _frozen(cgroup: Path) -> bool:
    return "frozen 1" in (cgroup / "cgroup.events").read_text()


def _held_by(cluster: LocalCluster, via: str) -> dict[str, str]:
    """node -> the replica holding its stream, as the replica at ``via`` reports it."""
    nodes = cluster.json("--controller", via, "nodes")
    return {n["node_id"]: n.get("replica", "") for n in nodes if n.get("connected")}


def _replica_of(cluster: LocalCluster, via: str, node_id: str) -> str:
    return _held_by(cluster, via).get(node_id, "")


def _targets(correction: dict[str, Any]) -> dict[str, str]:
    return {t["node_id"]: t["state"] for t in correction["targets"]}


def _all_paused(replicas: Replicas) -> bool:
    n = replicas.nodes
    b_tree = tree(n.b1.pid) + tree(n.b2.pid)
    return _frozen(n.a_cgroup) and all(proc_state(pid) == "T" for pid in b_tree)


def _all_running(replicas: Replicas) -> bool:
    n = replicas.nodes
    b_tree = tree(n.b1.pid) + tree(n.b2.pid)
    return not _frozen(n.a_cgroup) and all(proc_state(pid) in "RS" for pid in b_tree)


def test_a_correction_on_one_replica_reaches_agents_held_by_another(replicas: Replicas) -> None:
    cluster = replicas.nodes.cluster
    r1_id = wait_for(lambda: _replica_of(cluster, replicas.r1, "node-a"), 15, "node-a on r1")
    r2_id = wait_for(lambda: _replica_of(cluster, replicas.r1, "node-b"), 15, "node-b on r2")
    assert (r1_id, r2_id) == ("r1", "r2")  # as named by --replica-id
    assert _held_by(cluster, replicas.r2) == {"node-a": r1_id, "node-b": r2_id}
    table = cluster.cli("--controller", replicas.r2, "nodes")
    assert table.code == 0, table.err
    assert "REPLICA" in table.out
    assert r1_id in table.out
    assert r2_id in table.out

    paused = cluster.cli(
        "--controller", replicas.r1, "pause", "--all", "--reason", "replicas", "--yes",
        "--wait", "-o", "json",
    )  # fmt: skip
    assert paused.code == 0, paused.err + paused.out
    correction = paused.json()
    assert correction["state"] == "completed", correction
    assert _targets(correction) == {
        "node-a": "applied",
        "node-b": "applied",  # sent by r2, which holds node-b's stream
    }
    wait_for(lambda: _all_paused(replicas), 10, "both nodes' workloads paused")
    cid = correction["spec"]["correction_id"]
    seen_from_r2 = cluster.json("--controller", replicas.r2, "status", cid)
    assert seen_from_r2["state"] == "completed"

    # the other way round: a resume issued on r2 reaches node-a through r1
    resumed = cluster.cli(
        "--controller", replicas.r2, "resume", cid, "--reason", "replicas", "--wait", "-o", "json"
    )
    assert resumed.code == 0, resumed.err + resumed.out
    assert _targets(resumed.json()) == {
        "node-a": "applied",
        "node-b": "applied",
    }
    wait_for(lambda: _all_running(replicas), 10, "both nodes' workloads running again")
    original = cluster.json("--controller", replicas.r1, "status", cid)
    assert original["state"] == "reverted"


def test_a_replica_killed_mid_correction_its_agents_move_and_the_correction_completes(
    replicas: Replicas,
) -> None:
    cluster = replicas.nodes.cluster
    r1_id = wait_for(lambda: _replica_of(cluster, replicas.r1, "node-a"), 15, "node-a on r1")
    wait_for(lambda: _replica_of(cluster, replicas.r1, "node-b") not in ("", r1_id), 15, "on r2")

    # r2 hangs: it holds node-b's stream but can pass nothing on
    cluster.signal_controller("r2", signal.SIGSTOP)
    issued = cluster.cli(
        "--controller", replicas.r1, "pause", "--all", "--reason", "failover", "--yes",
        "-o", "json",
    )  # fmt: skip
    assert issued.code == 0, issued.err + issued.out
    cid = issued.json()["spec"]["correction_id"]
    pending = cluster.json("--controller", replicas.r1, "status", cid)
    assert _targets(pending)["node-b"] == "dispatched"  # waiting on r2
    assert not any(proc_state(pid) == "T" for pid in tree(replicas.nodes.b1.pid))

    # then it dies: node-b's agent moves to r1, which sends it the stored command
    cluster.kill_controller("r2")
    done = cluster.cli(
        "--controller", replicas.r1, "status", cid, "--watch", "-o", "json", timeout_s=60
    )
    assert done.code == 0, done.err + done.out
    final = done.json()
    assert final["state"] == "completed", final
    assert _targets(final) == {"node-a": "applied", "node-b": "applied"}
    wait_for(lambda: _all_paused(replicas), 10, "both nodes' workloads paused")
    assert _held_by(cluster, replicas.r1) == {"node-a": r1_id, "node-b": r1_id}

    # the CLI fails over too: r2 first in its list, dead, so r1 answers
    both = f"{replicas.r2},{replicas.r1}"
    resumed = cluster.cli("--controller", both, "resume", cid, "--reason", "over", "--wait")
    assert resumed.code == 0, resumed.err + resumed.out
    wait_for(lambda: _all_running(replicas), 10, "both nodes' workloads running again")
