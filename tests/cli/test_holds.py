"""Every hold on a workload is listed, and the workload stays held until the last one goes.

Two operators pause the same real process on node-b; the workloads table names both pauses.
Bob's resume lifts only Bob's hold: the process stays stopped and the table names Alice's.
"""

from __future__ import annotations

from tests.agent.enforcer_harness import frozen
from tests.cli.conftest import Rig
from tests.support.cluster import wait_for
from tests.support.workloads import proc_state


def _pause(rig: Rig, workload_id: str, user: str) -> str:
    result = rig.cluster.cli(
        "pause", "--workload", workload_id, "--reason", f"{user}'s incident", "--wait",
        env={"BACKSTOP_USER": user},
    )  # fmt: skip
    assert result.code == 0, result.out + result.err
    return result.out.split()[0]


def _row(rig: Rig, pid: int) -> str:
    result = rig.cluster.cli("workloads")
    assert result.code == 0, result.err
    (row,) = [r for r in result.out.splitlines() if f" {pid} " in r]
    return row


def _held(pid: int) -> bool:
    return proc_state(pid) == "T" or frozen(pid)


def test_the_table_lists_every_hold_and_a_resume_lifts_only_its_own(rig: Rig) -> None:
    pid = rig.b1.pid
    workload_id = rig.workload_id(pid)
    alice = _pause(rig, workload_id, "alice")
    bob = _pause(rig, workload_id, "bob")
    assert _held(pid)
    wait_for(lambda: f"pause {alice}, pause {bob}" in _row(rig, pid), 20, "both holds in the table")
    assert "HOLDS" in rig.cluster.cli("workloads").out.splitlines()[0]

    resumed = rig.cluster.cli("resume", bob, "--wait", env={"BACKSTOP_USER": "bob"})
    assert resumed.code == 0, resumed.out + resumed.err
    assert _held(pid)  # Alice's pause still holds it
    wait_for(lambda: bob not in _row(rig, pid), 20, "Bob's hold to go from the table")
    assert f"pause {alice}" in _row(rig, pid)

    resumed = rig.cluster.cli("resume", alice, "--wait", env={"BACKSTOP_USER": "alice"})
    assert resumed.code == 0, resumed.out + resumed.err
    wait_for(lambda: not _held(pid), 10, "the process to run again")
    wait_for(lambda: alice not in _row(rig, pid), 20, "the last hold to go")
