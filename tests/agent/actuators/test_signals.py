"""Stopping, continuing and terminating real process trees, checked through /proc."""

from __future__ import annotations

import os
import signal

import pytest

from backstop.agent.actuators.proctree import (
    PidReused,
    ProcessGone,
    ProcessRef,
    ProtectedProcess,
    SignalGuard,
    read_stat,
)
from backstop.agent.actuators.signals import TreeSignaller
from tests.support.workloads import (
    WorkloadFactory,
    WorkloadProcess,
    all_gone,
    proc_state,
    wait_until,
)


@pytest.fixture
def signaller() -> TreeSignaller:
    return TreeSignaller(settle_timeout_s=5.0, kill_timeout_s=5.0)


def ref(pid: int) -> ProcessRef:
    stat = read_stat(pid)
    assert stat is not None
    return stat.ref


def states(w: WorkloadProcess) -> dict[int, str | None]:
    return {pid: proc_state(pid) for pid in w.tree_pids()}


def test_stop_tree_stops_every_process_and_continue_tree_resumes_them(
    workloads: WorkloadFactory, signaller: TreeSignaller
) -> None:
    w = workloads.start(children=2, listen=True)
    pids = w.tree_pids()
    assert len(pids) == 3

    stopped = signaller.stop_tree(ref(w.pid))
    assert stopped.complete
    assert set(stopped.stopped) == set(pids)
    assert set(states(w).values()) == {"T"}

    again = signaller.stop_tree(ref(w.pid))  # idempotent
    assert again.complete
    assert set(again.stopped) == set(pids)

    continued = signaller.continue_tree(ref(w.pid))
    assert continued.complete
    assert set(continued.continued) == set(pids)
    assert "T" not in states(w).values()
    assert w.ping().startswith(f"pong {w.pid} ")


def test_children_forked_while_stopping_are_stopped_too(
    workloads: WorkloadFactory, signaller: TreeSignaller
) -> None:
    # each child forks a grandchild every 5 ms, so new processes appear during the stop
    w = workloads.start(children=3, fork_every_s=0.005, max_forks=200)
    assert wait_until(lambda: len(w.tree_pids()) > 6)
    result = signaller.stop_tree(ref(w.pid))
    assert result.complete
    after = states(w)
    assert set(after.values()) == {"T"}, after
    assert set(after) <= set(result.stopped)
    # nothing of the tree can run, so nothing new appears
    assert not wait_until(lambda: len(w.tree_pids()) != len(after), timeout_s=0.2)


def test_continue_tree_takes_explicit_processes(
    workloads: WorkloadFactory, signaller: TreeSignaller
) -> None:
    w = workloads.start(children=1)
    signaller.stop_tree(ref(w.pid))
    child = ref(w.child_pids[0])
    result = signaller.continue_tree(refs=[child])
    assert result.continued == (child.pid,)
    assert proc_state(child.pid) != "T"
    assert proc_state(w.pid) == "T"


def test_terminate_tree_lets_cooperative_processes_exit(
    workloads: WorkloadFactory, signaller: TreeSignaller
) -> None:
    w = workloads.start(children=2)
    pids = w.tree_pids()
    result = signaller.terminate_tree(ref(w.pid), grace_s=10.0)
    assert result.complete
    assert set(result.exited) == set(pids)
    assert result.killed == ()
    assert result.exit_codes[w.pid] == -signal.SIGTERM  # reaped: the root is our child
    assert all_gone(pids)


def test_terminate_tree_kills_what_ignores_sigterm_after_the_grace(
    workloads: WorkloadFactory, signaller: TreeSignaller
) -> None:
    w = workloads.start(children=2, ignore_sigterm=True)
    pids = w.tree_pids()
    result = signaller.terminate_tree(ref(w.pid), grace_s=0.5)
    assert result.complete
    assert set(result.killed) == set(pids)
    assert result.exited == ()
    assert result.exit_codes[w.pid] == -signal.SIGKILL
    assert all_gone(pids)
    assert w.session_pids() == []


def test_terminate_tree_resumes_a_stopped_tree_so_it_handles_sigterm(
    workloads: WorkloadFactory, signaller: TreeSignaller
) -> None:
    w = workloads.start(children=2)
    pids = w.tree_pids()
    assert signaller.stop_tree(ref(w.pid)).complete
    result = signaller.terminate_tree(ref(w.pid), grace_s=10.0)
    assert set(result.exited) == set(pids)  # SIGTERM, not SIGKILL: they were continued
    assert result.killed == ()
    assert all_gone(pids)


def test_terminate_tree_catches_children_forked_during_the_grace(
    workloads: WorkloadFactory, signaller: TreeSignaller
) -> None:
    w = workloads.start(children=2, ignore_sigterm=True, fork_every_s=0.01, max_forks=1000)
    before = set(w.tree_pids())
    result = signaller.terminate_tree(ref(w.pid), grace_s=0.3)
    assert result.complete
    assert before <= set(result.pids)
    assert len(result.killed) > len(before)  # children forked during the grace were found
    assert w.session_pids() == []  # no orphan left behind


def test_terminate_tree_follows_children_that_daemonize_during_the_grace(
    workloads: WorkloadFactory, signaller: TreeSignaller
) -> None:
    # on SIGTERM each child forks a SIGTERM-ignoring grandchild and exits 0.3 s later:
    # unless the grandchild is tracked while its parent lives, it escapes as an orphan
    w = workloads.start(children=2, escape_on_sigterm=True, escape_delay_s=0.3)
    children = set(w.child_pids)
    result = signaller.terminate_tree(ref(w.pid), grace_s=1.0)
    assert result.complete
    assert children <= set(result.exited)
    assert len(result.killed) == 2  # the two grandchildren
    assert not children & set(result.killed)
    assert w.session_pids() == []


def test_terminate_tree_of_an_exited_root_raises_process_gone(
    workloads: WorkloadFactory, signaller: TreeSignaller
) -> None:
    w = workloads.start()
    root = ref(w.pid)
    w.kill()
    with pytest.raises(ProcessGone):
        signaller.terminate_tree(root, grace_s=0.1)
    with pytest.raises(ProcessGone):
        signaller.stop_tree(root)


def test_a_reused_pid_is_never_signalled(
    workloads: WorkloadFactory, signaller: TreeSignaller
) -> None:
    w = workloads.start(children=1)
    stale = ProcessRef(w.pid, ref(w.pid).start_ticks - 5)
    with pytest.raises(PidReused):
        signaller.stop_tree(stale)
    with pytest.raises(PidReused):
        signaller.terminate_tree(stale, grace_s=0.1)
    with pytest.raises(PidReused):
        signaller.send(stale, signal.SIGKILL)
    assert "T" not in states(w).values()
    assert not all_gone(w.tree_pids())


def test_protected_pids_are_refused_before_any_signal(signaller: TreeSignaller) -> None:
    with pytest.raises(ProtectedProcess, match="init"):
        signaller.stop_tree(ref(1))
    with pytest.raises(ProtectedProcess, match="agent itself"):
        signaller.send(ref(os.getpid()), signal.SIGSTOP)


def test_the_agents_ancestors_are_refused(workloads: WorkloadFactory) -> None:
    # The "agent" is a child of a workload here, so its ancestor is a process of the test's
    # own (the test's own parent may be init, when the run was started detached).
    w = workloads.start(children=1)
    as_agent_child = TreeSignaller(guard=SignalGuard(agent_pid=w.child_pids[0]))
    with pytest.raises(ProtectedProcess, match="ancestor"):
        as_agent_child.terminate_tree(ref(w.pid), grace_s=0.1)
    with pytest.raises(ProtectedProcess, match="ancestor"):
        as_agent_child.send(ref(os.getpid()), signal.SIGSTOP)
    assert proc_state(w.pid) != "T"


def test_a_tree_containing_the_agent_is_refused(workloads: WorkloadFactory) -> None:
    w = workloads.start(children=1)
    as_agent_child = TreeSignaller(guard=SignalGuard(agent_pid=w.child_pids[0]))
    with pytest.raises(ProtectedProcess):
        as_agent_child.stop_tree(ref(w.pid))
    assert "T" not in states(w).values()
