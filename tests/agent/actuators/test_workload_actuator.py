"""ProcessActuator on real workloads: pause, resume, terminate and cpu.max, each idempotent."""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path

import pytest

from backstop.agent.actuators.workload_actuator import (
    Mechanism,
    Outcome,
    ProcessActuator,
)
from backstop.core.errors import InvalidInput
from backstop.core.models import Fingerprint, Workload
from tests.support.cgroups import cgroup_procs
from tests.support.workloads import (
    WorkloadFactory,
    WorkloadProcess,
    all_gone,
    proc_state,
    wait_until,
)


@pytest.fixture
def actuator() -> ProcessActuator:
    return ProcessActuator(settle_timeout_s=5.0, kill_timeout_s=5.0, freeze_timeout_s=5.0)


def states(w: WorkloadProcess) -> set[str | None]:
    return {proc_state(pid) for pid in w.tree_pids()}


def events(directory: Path) -> str:
    return (directory / "cgroup.events").read_text()


# --- pause and resume with signals ---------------------------------------------------------------


def test_pause_stops_a_tree_without_its_own_cgroup_and_resume_continues_it(
    workloads: WorkloadFactory, actuator: ProcessActuator
) -> None:
    w = workloads.start(children=2, listen=True)
    workload = w.as_workload()
    assert len(workload.pids) == 3

    paused = actuator.pause(workload)
    assert paused.outcome == Outcome.APPLIED, paused.detail
    assert paused.mechanism == Mechanism.SIGSTOP
    assert set(paused.pids) == set(workload.pids)
    assert states(w) == {"T"}
    assert "GPU memory" in paused.leaves_behind

    again = actuator.pause(workload)
    assert again.outcome == Outcome.APPLIED
    assert "already paused" in again.detail

    resumed = actuator.resume(workload)
    assert resumed.outcome == Outcome.APPLIED, resumed.detail
    assert resumed.mechanism == Mechanism.SIGCONT
    assert "T" not in states(w)
    assert w.ping().startswith(f"pong {w.pid} ")

    again = actuator.resume(workload)
    assert again.outcome == Outcome.APPLIED
    assert again.mechanism == Mechanism.NONE
    assert "already running" in again.detail


def test_pause_catches_children_forked_while_it_stops_the_tree(
    workloads: WorkloadFactory, actuator: ProcessActuator
) -> None:
    w = workloads.start(children=3, fork_every_s=0.005, max_forks=200)
    assert wait_until(lambda: len(w.tree_pids()) > 6)
    result = actuator.pause(w.as_workload())
    assert result.outcome == Outcome.APPLIED, result.detail
    assert states(w) == {"T"}
    assert set(w.tree_pids()) <= set(result.pids)


# --- pause and resume with the cgroup freezer -----------------------------------------------------


def test_pause_freezes_a_workload_in_its_own_cgroup_and_resume_thaws_it(
    workloads: WorkloadFactory, actuator: ProcessActuator, cgroup_dir: Path
) -> None:
    w = workloads.start(children=2, listen=True, counter=True, cgroup_dir=cgroup_dir)
    workload = w.as_workload()

    paused = actuator.pause(workload)
    assert paused.outcome == Outcome.APPLIED, paused.detail
    assert paused.mechanism == Mechanism.CGROUP_FREEZE
    assert "frozen 1" in events(cgroup_dir)
    assert "T" not in states(w)  # frozen, not stopped
    frozen_at = w.counter()
    assert not wait_until(lambda: w.counter() != frozen_at, timeout_s=0.3)

    again = actuator.pause(workload)
    assert again.outcome == Outcome.APPLIED
    assert "already paused" in again.detail

    resumed = actuator.resume(workload)
    assert resumed.outcome == Outcome.APPLIED, resumed.detail
    assert resumed.mechanism == Mechanism.CGROUP_FREEZE
    assert "frozen 0" in events(cgroup_dir)
    assert wait_until(lambda: w.counter() > frozen_at)
    assert w.ping().startswith(f"pong {w.pid} ")

    again = actuator.resume(workload)
    assert again.outcome == Outcome.APPLIED
    assert "already running" in again.detail


def test_resume_undoes_a_stop_and_a_freeze_together(
    workloads: WorkloadFactory, actuator: ProcessActuator, cgroup_dir: Path
) -> None:
    w = workloads.start(children=1, counter=True, cgroup_dir=cgroup_dir)
    os.kill(w.child_pids[0], signal.SIGSTOP)
    assert wait_until(lambda: proc_state(w.child_pids[0]) == "T")
    assert actuator.pause(w.as_workload()).mechanism == Mechanism.CGROUP_FREEZE
    resumed = actuator.resume(w.as_workload())
    assert resumed.outcome == Outcome.APPLIED, resumed.detail
    assert resumed.mechanism == f"{Mechanism.CGROUP_FREEZE}+{Mechanism.SIGCONT}"
    assert "frozen 0" in events(cgroup_dir)
    assert "T" not in states(w)


def test_a_shared_cgroup_is_neither_frozen_nor_thawed(
    workloads: WorkloadFactory, actuator: ProcessActuator, cgroup_dir: Path
) -> None:
    w = workloads.start(children=1, cgroup_dir=cgroup_dir)
    workloads.start(cgroup_dir=cgroup_dir)  # a neighbour in the same cgroup
    paused = actuator.pause(w.as_workload())
    assert paused.mechanism == Mechanism.SIGSTOP
    assert "frozen 0" in events(cgroup_dir)
    assert "also holds" in paused.detail
    (cgroup_dir / "cgroup.freeze").write_text("1")  # someone else freezes the shared cgroup
    resumed = actuator.resume(w.as_workload())
    assert resumed.outcome == Outcome.FAILED
    assert "not thawed" in resumed.detail
    assert "frozen 1" in events(cgroup_dir)


# --- terminate -----------------------------------------------------------------------------------


def test_terminate_kills_a_tree_that_ignores_sigterm_after_the_grace(
    workloads: WorkloadFactory, actuator: ProcessActuator
) -> None:
    w = workloads.start(children=2, ignore_sigterm=True)
    workload = w.as_workload()
    result = actuator.terminate(workload, grace_s=0.5)
    assert result.outcome == Outcome.APPLIED, result.detail
    assert result.mechanism == Mechanism.SIGTERM_SIGKILL
    assert set(result.pids) == set(workload.pids)
    assert "0 exited after SIGTERM, 3 killed with SIGKILL" in result.detail
    assert f"root exit status {-signal.SIGKILL}" in result.detail
    assert all_gone(workload.pids)
    assert w.session_pids() == []

    again = actuator.terminate(workload, grace_s=0.5)
    assert again.outcome == Outcome.APPLIED
    assert "already exited" in again.detail


def test_terminate_of_a_paused_tree_delivers_sigterm(
    workloads: WorkloadFactory, actuator: ProcessActuator
) -> None:
    w = workloads.start(children=2, graceful_sigterm=True)
    workload = w.as_workload()
    assert actuator.pause(workload).mechanism == Mechanism.SIGSTOP
    result = actuator.terminate(workload, grace_s=3.0)
    assert result.outcome == Outcome.APPLIED, result.detail
    assert "3 exited after SIGTERM, 0 killed" in result.detail
    assert all_gone(workload.pids)


def test_terminate_of_a_frozen_cgroup_thaws_it_so_sigterm_is_handled(
    workloads: WorkloadFactory, actuator: ProcessActuator, cgroup_dir: Path
) -> None:
    # A SIGTERM handler cannot run in a frozen task (the default action would kill it
    # even there), so only a thaw lets these processes shut down gracefully.
    w = workloads.start(children=2, graceful_sigterm=True, cgroup_dir=cgroup_dir)
    workload = w.as_workload()
    assert actuator.pause(workload).mechanism == Mechanism.CGROUP_FREEZE
    result = actuator.terminate(workload, grace_s=3.0)
    assert result.outcome == Outcome.APPLIED, result.detail
    assert "3 exited after SIGTERM, 0 killed" in result.detail
    assert "root exit status 0" in result.detail
    assert cgroup_procs(cgroup_dir) == set()
    assert all_gone(workload.pids)


def test_terminate_sweeps_processes_that_escaped_the_tree_from_its_cgroup(
    workloads: WorkloadFactory, actuator: ProcessActuator, cgroup_dir: Path
) -> None:
    # on SIGTERM each child leaves a SIGTERM-ignoring orphan behind, outside the tree
    w = workloads.start(children=3, escape_on_sigterm=True, cgroup_dir=cgroup_dir)
    result = actuator.terminate(w.as_workload(), grace_s=0.5)
    assert result.outcome == Outcome.APPLIED, result.detail
    assert cgroup_procs(cgroup_dir) == set()
    assert w.session_pids() == []
    if Mechanism.CGROUP_KILL in result.mechanism:
        assert "more killed through cgroup.kill" in result.detail


def test_terminate_leaves_alive_pids_alone_when_the_root_is_gone(
    workloads: WorkloadFactory, actuator: ProcessActuator
) -> None:
    w = workloads.start(children=1)
    workload = w.as_workload()
    os.kill(w.pid, signal.SIGKILL)
    w.popen.wait(timeout=5)
    result = actuator.terminate(workload, grace_s=0.1)
    assert result.outcome == Outcome.FAILED
    assert result.pids == (w.child_pids[0],)
    assert "none was signalled" in result.detail
    assert not all_gone([w.child_pids[0]])


# --- refusals and identity ---------------------------------------------------------------------


def test_a_reused_root_pid_is_left_alone(
    workloads: WorkloadFactory, actuator: ProcessActuator
) -> None:
    w = workloads.start(children=1)
    real = w.as_workload()
    stale = dataclasses.replace(real, started_at_s=real.started_at_s - 100, pids=(w.pid,))
    paused = actuator.pause(stale)
    assert paused.outcome == Outcome.SKIPPED
    assert "another process" in paused.detail
    terminated = actuator.terminate(stale, grace_s=0.1)
    assert terminated.outcome == Outcome.APPLIED
    assert "already exited" in terminated.detail
    assert "T" not in states(w)
    assert not all_gone(real.pids)


@pytest.mark.parametrize(
    ("pid", "why"),
    [(1, "init"), (os.getpid(), "agent itself")],
    ids=["init", "agent"],
)
def test_protected_pids_are_refused(actuator: ProcessActuator, pid: int, why: str) -> None:
    workload = Workload("wl-x", "node-test", pid, (pid,), Fingerprint())
    for result in (actuator.pause(workload), actuator.terminate(workload, grace_s=0.1)):
        assert result.outcome == Outcome.FAILED
        assert why in result.detail
    assert proc_state(pid) != "T"


def test_the_agents_ancestor_is_refused(workloads: WorkloadFactory) -> None:
    # The "agent" is a workload's child, so the workload's root is its ancestor (the test's
    # own parent may be init when the run was started detached).
    w = workloads.start(children=1)
    as_agent_child = ProcessActuator(agent_pid=w.child_pids[0], settle_timeout_s=5.0)
    workload = Workload("wl-x", "node-test", w.pid, (w.pid,), Fingerprint())
    for result in (
        as_agent_child.pause(workload),
        as_agent_child.terminate(workload, grace_s=0.1),
    ):
        assert result.outcome == Outcome.FAILED
        assert "ancestor" in result.detail
    assert "T" not in states(w)


def test_a_workload_whose_tree_holds_the_agent_is_refused(
    workloads: WorkloadFactory,
) -> None:
    w = workloads.start(children=1)
    actuator = ProcessActuator(agent_pid=w.child_pids[0])
    result = actuator.pause(w.as_workload())
    assert result.outcome == Outcome.FAILED
    assert "ancestor of the agent" in result.detail
    assert "T" not in states(w)


def test_bad_parameters_raise_invalid_input(
    workloads: WorkloadFactory, actuator: ProcessActuator
) -> None:
    workload = workloads.start().as_workload()
    with pytest.raises(InvalidInput):
        actuator.terminate(workload, grace_s=-1)
    with pytest.raises(InvalidInput):
        actuator.throttle_cpu(workload, 0)
    with pytest.raises(InvalidInput):
        actuator.restore_cpu(workload, "lots")


# --- cpu.max -------------------------------------------------------------------------------------


def test_throttle_is_skipped_without_a_cgroup_of_its_own(
    workloads: WorkloadFactory, actuator: ProcessActuator
) -> None:
    result = actuator.throttle_cpu(workloads.start().as_workload(), 0.5)
    assert result.outcome == Outcome.SKIPPED
    assert "cpu.max would cap others" in result.detail


def test_throttle_is_skipped_where_the_cpu_controller_is_absent(
    workloads: WorkloadFactory, actuator: ProcessActuator, cgroup_dir: Path
) -> None:
    assert not (cgroup_dir / "cpu.max").exists()  # the cpu controller is not on cgroup2 here
    result = actuator.throttle_cpu(workloads.start(cgroup_dir=cgroup_dir).as_workload(), 0.5)
    assert result.outcome == Outcome.SKIPPED
    assert "cpu controller" in result.detail


def stat_line(pid: int, ppid: int) -> str:
    return f"{pid} (model-server) S {ppid} " + " ".join(["0"] * 17) + " 5000 " + "0 " * 30


def test_throttle_and_restore_cpu_max_of_a_dedicated_cgroup(tmp_path: Path) -> None:
    # The cpu controller cannot be moved to cgroup2 on a hybrid host, so this runs on a
    # /proc and a cgroup tree with the kernel's file layout: root 4242 and child 4243 in /wl.
    proc, cg = tmp_path / "proc", tmp_path / "cgroup"
    (proc).mkdir()
    (proc / "stat").write_text("cpu 1 2 3\nbtime 1700000000\n")
    for pid, ppid in [(4242, 1), (4243, 4242)]:
        (proc / str(pid)).mkdir()
        (proc / str(pid) / "stat").write_text(stat_line(pid, ppid))
        (proc / str(pid) / "cgroup").write_text("0::/wl\n")
    (cg / "wl").mkdir(parents=True)
    (cg / "wl" / "cgroup.procs").write_text("4242\n4243\n")
    (cg / "wl" / "cpu.max").write_text("max 100000\n")
    actuator = ProcessActuator(proc_root=proc, cgroup_root=cg, agent_pid=os.getpid())
    workload = Workload("wl-1", "node-test", 4242, (4242, 4243), Fingerprint(cgroup="/wl"))

    throttled = actuator.throttle_cpu(workload, 0.5)
    assert throttled.outcome == Outcome.APPLIED, throttled.detail
    assert throttled.mechanism == Mechanism.CPU_MAX
    assert throttled.previous == "max 100000"
    assert throttled.pids == (4242, 4243)
    assert (cg / "wl" / "cpu.max").read_text() == "50000 100000"

    for cores in (0.5, 2.0):  # idempotent, and never loosens an existing cap
        again = actuator.throttle_cpu(workload, cores)
        assert again.outcome == Outcome.APPLIED
        assert "already throttled" in again.detail
        assert (cg / "wl" / "cpu.max").read_text() == "50000 100000"

    restored = actuator.restore_cpu(workload, throttled.previous)
    assert restored.outcome == Outcome.APPLIED, restored.detail
    assert (cg / "wl" / "cpu.max").read_text() == "max 100000"
    again = actuator.restore_cpu(workload, throttled.previous)
    assert "already restored" in again.detail

    outcome = throttled.to_workload_outcome()
    assert (outcome.workload_id, outcome.outcome) == ("wl-1", "applied")
    assert "cpu.max" in outcome.detail


def test_actions_on_a_workload_that_is_gone(
    workloads: WorkloadFactory, actuator: ProcessActuator
) -> None:
    w = workloads.start()
    workload = w.as_workload()
    w.kill()
    assert actuator.pause(workload).outcome == Outcome.SKIPPED
    assert actuator.resume(workload).outcome == Outcome.SKIPPED
    assert actuator.throttle_cpu(workload, 1.0).outcome == Outcome.SKIPPED
    terminated = actuator.terminate(workload)
    assert terminated.outcome == Outcome.APPLIED
    assert "already exited" in terminated.detail


def test_mechanisms_name_what_the_host_offers(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("memory\n")
    (tmp_path / "a.slice").mkdir()
    (tmp_path / "a.slice" / "cgroup.freeze").write_text("0\n")
    actuator = ProcessActuator(cgroup_root=tmp_path)
    assert actuator.mechanisms == ("SIGSTOP", "SIGCONT", "SIGTERM+SIGKILL", "cgroup.freeze")
