"""Process trees from /proc: parsing, enumeration, identity across pid reuse, the guard."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest

from backstop.agent.actuators.proctree import (
    PidReused,
    ProcessGone,
    ProcessRef,
    ProcStat,
    ProtectedProcess,
    SignalGuard,
    current,
    descendants,
    epoch_start_s,
    parse_stat,
    read_stat,
    ref_for,
    snapshot,
    tree,
)
from tests.support.workloads import WorkloadFactory, wait_until

STAT_TAIL = " ".join(["0"] * 30)


def stat_line(pid: int, comm: str, state: str, ppid: int, start_ticks: int) -> str:
    fields_4_to_21 = [str(ppid)] + ["0"] * 17
    return f"{pid} ({comm}) {state} {' '.join(fields_4_to_21)} {start_ticks} {STAT_TAIL}\n"


def test_parses_stat_whatever_the_command_name_holds() -> None:
    line = stat_line(42, "evil) S 1 (name", "T", 7, 12345)
    assert parse_stat(42, line) == ProcStat(pid=42, ppid=7, state="T", start_ticks=12345)


def test_reads_the_real_stat_of_this_process() -> None:
    stat = read_stat(os.getpid())
    assert stat is not None
    assert stat.ppid == os.getppid()
    assert stat.alive
    assert not stat.stopped
    assert read_stat(0) is None


def test_descendants_follow_parents_and_skip_zombies() -> None:
    processes = {
        s.pid: s
        for s in [
            ProcStat(10, 1, "S", 1),
            ProcStat(11, 10, "S", 2),
            ProcStat(12, 11, "R", 3),
            ProcStat(13, 10, "Z", 4),
            ProcStat(14, 1, "S", 5),
            ProcStat(15, 12, "T", 6),
        ]
    }
    assert [s.pid for s in descendants(processes, [10])] == [11, 12, 15]
    assert [s.pid for s in descendants(processes, [11, 14])] == [12, 15]
    assert descendants(processes, [99]) == []


def test_tree_of_a_real_workload_matches_psutil(workloads: WorkloadFactory) -> None:
    w = workloads.start(children=2, fork_every_s=0.01, max_forks=2)
    root = ProcessRef(w.pid, parse_stat(w.pid, Path(f"/proc/{w.pid}/stat").read_text()).start_ticks)
    psutil_root = psutil.Process(w.pid)
    # let the children fork their grandchildren, so the tree has three levels
    assert wait_until(lambda: len(psutil_root.children(recursive=True)) == 6)
    members = tree(root)
    assert members[0].pid == w.pid
    expected = {w.pid} | {c.pid for c in psutil_root.children(recursive=True)}
    assert {s.pid for s in members} == expected
    assert {s.pid for s in members} <= set(snapshot())


def test_a_fake_proc_root_is_honoured(tmp_path: Path) -> None:
    for pid, ppid in [(100, 1), (101, 100), (102, 101)]:
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(stat_line(pid, "x", "S", ppid, pid * 10))
    (tmp_path / "self").mkdir()
    assert set(snapshot(tmp_path)) == {100, 101, 102}
    assert [s.pid for s in tree(ProcessRef(100, 1000), tmp_path)] == [100, 101, 102]


def test_a_changed_start_time_means_the_pid_was_reused(workloads: WorkloadFactory) -> None:
    w = workloads.start()
    stat = read_stat(w.pid)
    assert stat is not None
    assert current(stat.ref).ref == stat.ref
    with pytest.raises(PidReused, match="another process"):
        current(ProcessRef(w.pid, stat.start_ticks - 1))
    with pytest.raises(PidReused):
        tree(ProcessRef(w.pid, stat.start_ticks + 1))


def test_ref_for_checks_the_epoch_start_time_a_report_carried(
    workloads: WorkloadFactory,
) -> None:
    w = workloads.start()
    started = psutil.Process(w.pid).create_time()
    assert abs(epoch_start_s(w.pid) - started) < 0.02
    ref = ref_for(w.pid, started)
    assert ref.pid == w.pid
    assert ref_for(w.pid, 0.0) == ref  # unknown start time: accepted
    with pytest.raises(PidReused):
        ref_for(w.pid, started - 100)
    w.kill()
    with pytest.raises(ProcessGone):
        ref_for(w.pid, started)
    with pytest.raises(ProcessGone):
        current(ref)


def test_guard_refuses_init_the_agent_and_its_ancestors() -> None:
    guard = SignalGuard()
    for pid in (0, -1, -os.getpid(), 1, os.getpid(), os.getppid()):
        with pytest.raises(ProtectedProcess, match=f"pid {pid}"):
            guard.check(pid)
    assert {1, os.getpid(), os.getppid()} <= guard.protected()


def test_guard_allows_the_agents_children_but_not_its_parents(
    workloads: WorkloadFactory,
) -> None:
    w = workloads.start(children=1)
    SignalGuard().check([w.pid, w.child_pids[0]])
    as_if_agent_were_the_child = SignalGuard(agent_pid=w.child_pids[0])
    with pytest.raises(ProtectedProcess, match="ancestor of the agent"):
        as_if_agent_were_the_child.check(w.pid)
    with pytest.raises(ProtectedProcess, match="ancestor of the agent"):
        as_if_agent_were_the_child.check(os.getpid())
