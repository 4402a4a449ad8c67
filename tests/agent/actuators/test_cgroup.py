"""The cgroup v2 layer: mountinfo, placement, freezer, cgroup.kill and cpu.max."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backstop.agent.actuators.cgroup import (
    CgroupV2,
    CpuMax,
    find_cgroup2_mount,
    parse_mountinfo,
)
from backstop.core.errors import ActuationError, NotFound, NotSupported
from tests.support.cgroups import cgroup2_mount, cgroup_procs
from tests.support.workloads import WorkloadFactory, all_gone, proc_state, wait_until

HYBRID = """\
24 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 24 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
32 31 0:29 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
33 31 0:30 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd
35 31 0:32 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:15 - cgroup cgroup rw,cpu,cpuacct
"""
UNIFIED = """\
24 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
"""
V1_ONLY = """\
31 24 0:28 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
35 31 0:32 / /sys/fs/cgroup/cpu rw,nosuid shared:15 - cgroup cgroup rw,cpu
"""
NESTED_FIRST = """\
40 30 0:30 /kubepods/pod1 /host/cgroup rw,relatime - cgroup2 cgroup2 rw
41 30 0:30 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- finding the hierarchy ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "mount"),
    [
        (HYBRID, "/sys/fs/cgroup/unified"),
        (UNIFIED, "/sys/fs/cgroup"),
        (NESTED_FIRST, "/sys/fs/cgroup"),
    ],
    ids=["hybrid", "unified", "whole-hierarchy-preferred"],
)
def test_finds_the_cgroup2_mount_in_mountinfo(tmp_path: Path, text: str, mount: str) -> None:
    entry = find_cgroup2_mount(write(tmp_path / "mountinfo", text))
    assert entry.mount_point == Path(mount)
    assert entry.root == "/"


def test_mountinfo_escapes_and_optional_fields_are_parsed() -> None:
    line = r"50 30 0:40 / /mnt/with\040space rw shared:3 master:1 - cgroup2 none rw"
    (entry,) = parse_mountinfo(line + "\nnot a mountinfo line\n")
    assert entry.mount_point == Path("/mnt/with space")
    assert entry.fstype == "cgroup2"


def test_no_cgroup2_mount_is_not_supported(tmp_path: Path) -> None:
    with pytest.raises(NotSupported, match="no cgroup2"):
        find_cgroup2_mount(write(tmp_path / "mountinfo", V1_ONLY))
    with pytest.raises(NotSupported):
        find_cgroup2_mount(tmp_path / "missing")


def test_discovers_this_hosts_hierarchy_and_places_this_process() -> None:
    cgroups = CgroupV2.discover()
    assert cgroups.mount == cgroup2_mount()
    directory = cgroups.directory_of(os.getpid())
    assert os.getpid() in {int(p) for p in (directory / "cgroup.procs").read_text().split()}


# --- placing a pid -----------------------------------------------------------------------------


@pytest.fixture
def fake_proc(tmp_path: Path) -> Path:
    proc = tmp_path / "proc"
    write(proc / "10" / "cgroup", "12:cpu:/legacy\n0::/kubepods/pod1/abc\n")
    write(proc / "11" / "cgroup", "0::/\n")
    write(proc / "12" / "cgroup", "3:memory:/only-v1\n")
    write(proc / "13" / "cgroup", "0::/system.slice/gone.service (deleted)\n")
    return proc


def test_maps_a_pid_to_its_cgroup2_directory(fake_proc: Path, tmp_path: Path) -> None:
    cgroups = CgroupV2(tmp_path / "cg", proc_root=fake_proc)
    assert cgroups.cgroup_of(10) == "/kubepods/pod1/abc"
    assert cgroups.directory_of(10) == tmp_path / "cg" / "kubepods" / "pod1" / "abc"
    assert cgroups.directory_of(11) == tmp_path / "cg"
    assert cgroups.is_root(cgroups.directory_of(11))
    assert cgroups.cgroup_of(13) == "/system.slice/gone.service"
    with pytest.raises(NotSupported, match="no cgroup v2"):
        cgroups.cgroup_of(12)
    with pytest.raises(NotFound):
        cgroups.cgroup_of(99)


def test_a_mount_of_part_of_the_hierarchy_maps_relative_paths(
    fake_proc: Path, tmp_path: Path
) -> None:
    cgroups = CgroupV2(tmp_path / "cg", mount_root="/kubepods", proc_root=fake_proc)
    assert cgroups.directory_of(10) == tmp_path / "cg" / "pod1" / "abc"
    with pytest.raises(NotSupported, match="outside the mounted part"):
        cgroups.directory_of(11)


# --- placement against real cgroups -------------------------------------------------------------


def test_a_workload_alone_in_its_cgroup_is_dedicated(
    workloads: WorkloadFactory, cgroup_dir: Path
) -> None:
    w = workloads.start(children=2, cgroup_dir=cgroup_dir)
    cgroups = CgroupV2.discover()
    placement = cgroups.placement(w.pid, w.tree_pids(), agent_pid=os.getpid())
    assert placement.dedicated, placement.reason
    assert placement.directory == cgroup_dir
    assert placement.cgroup == "/" + cgroup_dir.name


def test_child_cgroups_count_as_the_workloads_own(
    workloads: WorkloadFactory, cgroup_dir: Path
) -> None:
    w = workloads.start(children=1, cgroup_dir=cgroup_dir)
    inner = cgroup_dir / "inner"
    inner.mkdir()
    (inner / "cgroup.procs").write_text(str(w.child_pids[0]))
    cgroups = CgroupV2.discover()
    assert cgroups.procs(cgroup_dir) == set(w.tree_pids())
    assert cgroups.procs(cgroup_dir, recursive=False) == {w.pid}
    placement = cgroups.placement(w.pid, w.tree_pids(), agent_pid=os.getpid())
    assert placement.dedicated, placement.reason
    assert placement.directory == cgroup_dir


def test_shared_or_partial_cgroups_are_not_dedicated(
    workloads: WorkloadFactory, cgroup_dir: Path
) -> None:
    cgroups = CgroupV2.discover()
    w = workloads.start(children=1, cgroup_dir=cgroup_dir)
    agent_inside = cgroups.placement(w.pid, w.tree_pids(), agent_pid=w.child_pids[0])
    assert not agent_inside.dedicated
    assert "agent" in agent_inside.reason

    neighbour = workloads.start(cgroup_dir=cgroup_dir)
    shared = cgroups.placement(w.pid, w.tree_pids(), agent_pid=os.getpid())
    assert not shared.dedicated
    assert str(neighbour.pid) in shared.reason

    everyone = cgroup_procs(cgroup_dir) | {os.getpid()}
    outside = cgroups.placement(neighbour.pid, everyone, agent_pid=1)
    assert not outside.dedicated
    assert "outside" in outside.reason

    in_root = workloads.start()
    root = cgroups.placement(in_root.pid, in_root.tree_pids(), agent_pid=os.getpid())
    assert not root.dedicated
    # here the root cgroup; on a systemd host, the test's own session scope
    assert "root cgroup" in root.reason or "agent" in root.reason


# --- freezer and kill ---------------------------------------------------------------------------


def test_freeze_and_thaw_stop_and_restart_progress(
    workloads: WorkloadFactory, cgroup_dir: Path
) -> None:
    w = workloads.start(children=1, counter=True, cgroup_dir=cgroup_dir)
    cgroups = CgroupV2.discover()
    assert cgroups.freeze(cgroup_dir, timeout_s=5.0)
    assert "frozen 1" in (cgroup_dir / "cgroup.events").read_text()
    assert cgroups.freeze_requested(cgroup_dir)
    assert cgroups.frozen(cgroup_dir)
    frozen_at = w.counter()
    assert not wait_until(lambda: w.counter() != frozen_at, timeout_s=0.3)
    assert all(proc_state(pid) != "T" for pid in w.tree_pids())  # frozen, not stopped

    assert cgroups.freeze(cgroup_dir, timeout_s=5.0)  # idempotent
    assert cgroups.thaw(cgroup_dir, timeout_s=5.0)
    assert "frozen 0" in (cgroup_dir / "cgroup.events").read_text()
    assert wait_until(lambda: w.counter() > frozen_at, timeout_s=5.0)
    assert cgroups.thaw(cgroup_dir, timeout_s=5.0)  # idempotent


def test_the_root_cgroup_cannot_be_frozen() -> None:
    cgroups = CgroupV2.discover()
    with pytest.raises(NotSupported):
        cgroups.freeze(cgroups.mount, timeout_s=0.1)


def test_cgroup_kill_empties_the_cgroup(workloads: WorkloadFactory, cgroup_dir: Path) -> None:
    w = workloads.start(children=2, ignore_sigterm=True, cgroup_dir=cgroup_dir)
    pids = w.tree_pids()
    cgroups = CgroupV2.discover()
    assert cgroups.can_kill(cgroup_dir)
    cgroups.kill(cgroup_dir)
    assert cgroups.await_empty(cgroup_dir, timeout_s=5.0) == frozenset()
    assert cgroup_procs(cgroup_dir) == set()
    assert wait_until(lambda: all_gone(pids))


def test_a_removed_cgroup_is_not_found(tmp_path: Path) -> None:
    cgroups = CgroupV2(tmp_path)
    with pytest.raises(NotFound):
        cgroups.procs(tmp_path / "gone")
    with pytest.raises(NotFound):
        cgroups.freeze(tmp_path / "gone", timeout_s=0.1)


# --- cpu.max ------------------------------------------------------------------------------------


def test_cpu_max_values_parse_and_render() -> None:
    assert CpuMax.parse("max 100000\n") == CpuMax(None, 100_000)
    assert CpuMax.parse("50000 100000") == CpuMax(50_000, 100_000)
    assert CpuMax.parse("max") == CpuMax(None, 100_000)
    assert CpuMax.parse("25000 50000").cores == 0.5
    assert CpuMax(None, 100_000).cores is None
    assert CpuMax.for_cores(1.5).render() == "150000 100000"
    assert CpuMax.for_cores(0.0001).quota_us == 1000  # the kernel's minimum
    for bad in ("", "fast 100000", "50000 0", "-1 100000", "1 2 3"):
        with pytest.raises(ActuationError):
            CpuMax.parse(bad)


def test_cpu_max_is_not_supported_where_the_controller_is_absent(cgroup_dir: Path) -> None:
    # Controllers reach a child only through its parent's cgroup.subtree_control; a fresh
    # scratch cgroup enables none, so its child never has cpu.max.
    child = cgroup_dir / "child"
    child.mkdir()
    assert "cpu" not in (cgroup_dir / "cgroup.subtree_control").read_text().split()
    cgroups = CgroupV2.discover()
    with pytest.raises(NotSupported, match="cpu controller"):
        cgroups.read_cpu_max(child)
    with pytest.raises(NotSupported):
        cgroups.write_cpu_max(child, CpuMax(50_000))


def test_cpu_max_write_returns_the_previous_value_for_restore(tmp_path: Path) -> None:
    # The cpu controller is bound to cgroup v1 on hosts like the one these tests were
    # written on, so the kernel refuses "+cpu"; this exercises the same file protocol on a
    # directory with the kernel's files (see test_cpu_max_on_a_real_cgroup for the kernel).
    directory = tmp_path / "wl"
    write(directory / "cpu.max", "max 100000\n")
    cgroups = CgroupV2(tmp_path)
    previous = cgroups.write_cpu_max(directory, CpuMax.for_cores(0.5))
    assert previous == CpuMax(None, 100_000)
    assert (directory / "cpu.max").read_text() == "50000 100000"
    assert cgroups.read_cpu_max(directory).cores == 0.5
    assert cgroups.write_cpu_max(directory, previous) == CpuMax(50_000, 100_000)
    assert (directory / "cpu.max").read_text() == "max 100000"


def test_cpu_max_on_a_real_cgroup(cgroup_dir: Path) -> None:
    mount = cgroup_dir.parent
    if "cpu" not in (mount / "cgroup.controllers").read_text().split():
        pytest.skip("the cpu controller is bound to cgroup v1 here, not to the cgroup2 mount")
    (mount / "cgroup.subtree_control").write_text("+cpu")
    cgroups = CgroupV2.discover()
    original = cgroups.read_cpu_max(cgroup_dir)
    previous = cgroups.write_cpu_max(cgroup_dir, CpuMax(30_000, 100_000))
    assert previous == original
    assert (cgroup_dir / "cpu.max").read_text().split() == ["30000", "100000"]
    cgroups.write_cpu_max(cgroup_dir, previous)
    assert cgroups.read_cpu_max(cgroup_dir) == original


# --- what the host offers -----------------------------------------------------------------------


def test_interfaces_are_probed_from_the_files_the_kernel_shows(tmp_path: Path) -> None:
    write(tmp_path / "cgroup.controllers", "cpu memory pids\n")
    write(tmp_path / "some.slice" / "cgroup.freeze", "0\n")
    assert CgroupV2(tmp_path).interfaces() == {"cgroup.freeze", "cpu.max"}
    write(tmp_path / "cgroup.controllers", "memory\n")
    write(tmp_path / "some.slice" / "cgroup.kill", "")
    assert CgroupV2(tmp_path).interfaces() == {"cgroup.freeze", "cgroup.kill"}


def test_interfaces_of_this_host(cgroup_dir: Path) -> None:
    offered = CgroupV2.discover().interfaces()
    assert {"cgroup.freeze", "cgroup.kill"} <= offered  # scratch cgroup has both files
    controllers = (cgroup_dir.parent / "cgroup.controllers").read_text().split()
    assert ("cpu.max" in offered) == ("cpu" in controllers)
