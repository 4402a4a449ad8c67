"""Process collector: real child processes, plus a fake /proc tree for the edge cases."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from backstop.agent.collectors.cgroup_file import container_id_from_cgroup, parse_cgroup_file
from backstop.agent.collectors.processes import (
    PF_KTHREAD,
    YOUNG_S,
    ProcessCollector,
    ProcessSnapshot,
    ProcInfo,
)
from backstop.core.errors import CollectorError
from tests.agent.conftest import FakeClock
from tests.agent.fingerprint.children import Spawner

CID = "4f3c2b1a" * 8
CID2 = "0123456789abcdef" * 4


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def stat_state(pid: int) -> str:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()[0]


# -- real processes ------------------------------------------------------------------------


def test_a_child_process_is_reported_as_the_kernel_sees_it(spawner: Spawner) -> None:
    child = spawner.python("import sys; print('ready', flush=True); sys.stdin.read()", "arg one")
    child.read_line()
    wait_for(lambda: stat_state(child.pid) == "S")  # blocked reading stdin

    snapshot = ProcessCollector().collect()

    info = snapshot.processes[child.pid]
    expected = psutil.Process(child.pid)
    assert info.pid == child.pid
    assert info.ppid == os.getpid()
    assert info.cmdline == (sys.executable, "-c", info.cmdline[2], "arg one")
    assert info.exe == os.path.realpath(sys.executable)
    assert info.name == expected.name()
    assert info.create_time == expected.create_time()
    assert info.status == "sleeping"
    assert info.uid == os.getuid()
    cgroup_lines = Path(f"/proc/{child.pid}/cgroup").read_text().splitlines()
    v2 = [line.split("::", 1)[1] for line in cgroup_lines if line.startswith("0::")]
    assert info.cgroup == (v2[0] if v2 else "")
    assert info.container_id == ""


def test_kernel_threads_are_left_out() -> None:
    kernel_threads = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                text = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            flags = int(text[text.rindex(")") + 2 :].split()[6])
            if flags & PF_KTHREAD:
                kernel_threads.add(int(name))
    assert kernel_threads, "this machine shows kernel threads in /proc"

    snapshot = ProcessCollector().collect()

    assert not kernel_threads & snapshot.processes.keys()
    assert os.getpid() in snapshot.processes


def test_children_and_descendants(spawner: Spawner) -> None:
    child = spawner.python(
        "import subprocess, sys\n"
        "kids = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])"
        " for _ in range(2)]\n"
        "print(*[k.pid for k in kids], flush=True)\n"
        "sys.stdin.read()\n"
    )
    kids = sorted(int(x) for x in child.read_line().split())

    snapshot = ProcessCollector().collect()

    assert snapshot.children(child.pid) == tuple(kids)
    assert set(snapshot.descendants(os.getpid())) >= {child.pid, *kids}
    assert snapshot.descendants(kids[0]) == ()
    assert list(snapshot.ancestors(kids[0]))[:2] == [child.pid, os.getpid()]


def test_an_orphan_is_reparented_at_the_next_collect(spawner: Spawner) -> None:
    child = spawner.python(
        "import subprocess, sys\n"
        "kid = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print(kid.pid, flush=True)\n"
        "sys.stdin.readline()\n"
    )
    grandchild = int(child.read_line())
    collector = ProcessCollector(refresh_interval_s=3600, clock=FakeClock())
    assert collector.collect().processes[grandchild].ppid == child.pid

    child.send("exit")
    child.popen.wait(timeout=10)
    wait_for(lambda: psutil.Process(grandchild).ppid() != child.pid)
    snapshot = collector.collect()

    assert child.pid not in snapshot.processes
    assert snapshot.processes[grandchild].ppid == psutil.Process(grandchild).ppid()


def test_exec_and_state_changes_show_at_the_next_refresh(spawner: Spawner) -> None:
    child = spawner.command(["sh", "-c", "echo ready; read line; exec sleep 600"])
    child.read_line()
    clock = FakeClock()
    collector = ProcessCollector(
        refresh_interval_s=10, clock=clock, wall_clock=lambda: time.time() + YOUNG_S
    )  # the child counts as settled: only the refresh reads it again
    before = collector.collect().processes[child.pid]
    assert before.name == "sh"

    child.send("go")
    wait_for(lambda: Path(f"/proc/{child.pid}/comm").read_text().strip() == "sleep")
    os.kill(child.pid, signal.SIGSTOP)
    wait_for(lambda: stat_state(child.pid) == "T")
    cached = collector.collect().processes[child.pid]
    clock.now += 10
    refreshed = collector.collect().processes[child.pid]

    assert cached == before  # between refreshes nothing is re-read
    assert refreshed.name == "sleep"
    assert refreshed.cmdline == ("sleep", "600")
    assert refreshed.exe == shutil.which("sleep") or refreshed.exe.endswith("/sleep")
    assert refreshed.status == "stopped"
    assert refreshed.create_time == before.create_time


def test_a_young_process_that_execs_the_same_program_is_read_again(
    spawner: Spawner, tmp_path: Path
) -> None:
    # a launcher that execs the server: both are `python`, so `comm` does not change; and a
    # cgroup joined just before the exec, as runtimes and the e2e rig do
    script = (
        "import os, sys; print('ready', flush=True); sys.stdin.readline(); "
        "os.execv(sys.executable, [sys.executable, '-c', "
        "'import sys; print(\"served\", flush=True); sys.stdin.read()', 'served'])"
    )
    child = spawner.python(script, "launcher")
    child.read_line()
    clock = FakeClock()
    collector = ProcessCollector(refresh_interval_s=3600, clock=clock)
    before = collector.collect().processes[child.pid]
    assert before.cmdline[-1] == "launcher"

    child.send("go")
    assert child.read_line() == "served"
    after = collector.collect().processes[child.pid]

    assert Path(f"/proc/{child.pid}/comm").read_text().strip() == before.name
    assert after.cmdline[-1] == "served"
    assert after.create_time == before.create_time


def test_an_old_process_is_read_again_only_at_the_refresh(spawner: Spawner) -> None:
    child = spawner.command(["sh", "-c", "echo ready; read line; exec sleep 600"])
    child.read_line()
    wall = [time.time()]
    collector = ProcessCollector(
        refresh_interval_s=3600, clock=FakeClock(), wall_clock=lambda: wall[0]
    )
    young = collector.collect().processes[child.pid]
    wall[0] += YOUNG_S  # it grows old: the next read is its last until the refresh
    collector.collect()
    child.send("go")
    wait_for(lambda: Path(f"/proc/{child.pid}/comm").read_text().strip() == "sleep")

    assert collector.collect().processes[child.pid] == young


def test_a_zombie_is_reported_as_one(spawner: Spawner) -> None:
    child = spawner.python(
        "import os, sys\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os._exit(0)\n"
        "print(pid, flush=True)\n"
        "sys.stdin.read()\n"
    )
    zombie = int(child.read_line())
    wait_for(lambda: stat_state(zombie) == "Z")

    info = ProcessCollector().collect().processes[zombie]

    assert info.status == "zombie"
    assert info.ppid == child.pid
    assert info.cmdline == ()


# -- fake /proc tree -----------------------------------------------------------------------

BOOT = 1_700_000_000
HZ = os.sysconf("SC_CLK_TCK")


def fake_process(
    root: Path,
    pid: int,
    *,
    ppid: int = 1,
    comm: str = "proc",
    state: str = "S",
    start_ticks: int = 100,
    flags: int = 0,
    cmdline: bytes | None = None,
    exe: str = "/usr/bin/proc",
    uid: int = 1000,
    cgroup: str = "0::/user.slice\n",
) -> Path:
    directory = root / str(pid)
    directory.mkdir(parents=True)
    fields = [state, ppid, 1, 1, 0, -1, flags, *[0] * 8, 20, 0, 1, 0, start_ticks, 0, 0]
    (directory / "stat").write_text(f"{pid} ({comm}) " + " ".join(map(str, fields)) + "\n")
    (directory / "cmdline").write_bytes(comm.encode() + b"\0" if cmdline is None else cmdline)
    if exe:
        (directory / "exe").symlink_to(exe)
    (directory / "status").write_text(f"Name:\t{comm}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")
    (directory / "cgroup").write_text(cgroup)
    return directory


@pytest.fixture
def fake_proc(tmp_path: Path) -> Path:
    root = tmp_path / "proc"
    root.mkdir()
    (root / "stat").write_text(f"cpu  1 2 3 4\nbtime {BOOT}\nprocesses 100\n")
    (root / "self").symlink_to("1")
    return root


def test_fake_tree_fields_and_create_time(fake_proc: Path) -> None:
    fake_process(
        fake_proc,
        1,
        ppid=0,
        comm="init",
        cmdline=b"/sbin/init\0splash\0",
        exe="/sbin/init",
        uid=0,
        cgroup="0::/init.scope\n",
    )
    fake_process(
        fake_proc, 50, comm="python3", start_ticks=HZ * 30, exe="/usr/bin/python3 (deleted)"
    )

    snapshot = ProcessCollector(fake_proc).collect()

    assert snapshot.processes[1] == ProcInfo(
        pid=1,
        ppid=0,
        name="init",
        exe="/sbin/init",
        cmdline=("/sbin/init", "splash"),
        create_time=100 / HZ + BOOT,
        status="sleeping",
        uid=0,
        cgroup="/init.scope",
        container_id="",
    )
    assert snapshot.processes[50].create_time == BOOT + 30.0
    assert snapshot.processes[50].exe == "/usr/bin/python3"
    assert snapshot.children(1) == (50,)


def test_fake_tree_kernel_threads_and_vanished_processes_are_skipped(fake_proc: Path) -> None:
    fake_process(fake_proc, 1, ppid=0)
    fake_process(fake_proc, 2, ppid=0, comm="kthreadd", flags=PF_KTHREAD, cmdline=b"", exe="")
    fake_process(fake_proc, 3, ppid=2, comm="kworker/0:0", flags=PF_KTHREAD | 0x40, exe="")
    (fake_proc / "77").mkdir()  # listed, but its files are gone: exited mid-scan
    gone_cmdline = fake_process(fake_proc, 78)
    (gone_cmdline / "cmdline").unlink()

    snapshot = ProcessCollector(fake_proc).collect()

    assert set(snapshot.processes) == {1}


def test_fake_tree_a_reused_pid_is_read_afresh(fake_proc: Path) -> None:
    fake_process(fake_proc, 1, ppid=0)
    fake_process(fake_proc, 40, comm="old", start_ticks=100)
    collector = ProcessCollector(fake_proc, refresh_interval_s=3600, clock=FakeClock())
    assert collector.collect().processes[40].name == "old"

    # Build the new incarnation beside the old one, so the two directories have different
    # inode numbers, as procfs gives them.
    staging = fake_proc / "staging"
    fake_process(staging, 40, comm="new", start_ticks=900)
    shutil.rmtree(fake_proc / "40")
    (staging / "40").rename(fake_proc / "40")
    info = collector.collect().processes[40]

    assert info.name == "new"
    assert info.create_time == BOOT + 900 / HZ


def test_fake_tree_long_names_and_retitled_command_lines(fake_proc: Path) -> None:
    fake_process(
        fake_proc,
        1,
        ppid=0,
        comm="text-generation",
        cmdline=b"/usr/local/bin/text-generation-launcher\x00--port\x008080\x00",
    )
    fake_process(fake_proc, 2, comm="ray::ServeRepli", cmdline=b"ray::ServeReplica:app:Llama  ")

    snapshot = ProcessCollector(fake_proc).collect()

    assert snapshot.processes[1].name == "text-generation-launcher"
    assert snapshot.processes[1].cmdline[1:] == ("--port", "8080")
    assert snapshot.processes[2].cmdline == ("ray::ServeReplica:app:Llama",)


def test_fake_tree_container_ids(fake_proc: Path) -> None:
    fake_process(fake_proc, 1, ppid=0)
    fake_process(
        fake_proc,
        10,
        cgroup=f"0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-{CID}.scope\n",
    )
    fake_process(fake_proc, 11, cgroup=f"12:memory:/docker/{CID2}\n0::/\n")

    snapshot = ProcessCollector(fake_proc).collect()

    assert snapshot.processes[10].container_id == CID
    assert snapshot.processes[10].cgroup.endswith(f"cri-containerd-{CID}.scope")
    assert snapshot.processes[11].container_id == CID2
    assert snapshot.processes[11].cgroup == "/"


def test_fake_tree_cgroup_moves_show_at_the_cgroup_refresh(fake_proc: Path) -> None:
    fake_process(fake_proc, 1, ppid=0)
    fake_process(fake_proc, 60, cgroup="0::/user.slice\n")
    clock = FakeClock()
    collector = ProcessCollector(
        fake_proc, refresh_interval_s=10, cgroup_refresh_interval_s=60, clock=clock
    )
    assert collector.collect().processes[60].cgroup == "/user.slice"

    (fake_proc / "60" / "cgroup").write_text(f"0::/system.slice/docker-{CID}.scope\n")
    clock.now += 10
    before = collector.collect().processes[60]
    clock.now += 50
    after = collector.collect().processes[60]

    assert (before.cgroup, before.container_id) == ("/user.slice", "")
    assert (after.cgroup, after.container_id) == (f"/system.slice/docker-{CID}.scope", CID)


def test_unreadable_root_is_a_collector_error(tmp_path: Path) -> None:
    with pytest.raises(CollectorError):
        ProcessCollector(tmp_path / "missing").collect()


def test_missing_boot_time_is_a_collector_error(fake_proc: Path) -> None:
    (fake_proc / "stat").write_text("cpu 1 2 3\n")
    fake_process(fake_proc, 1, ppid=0)

    with pytest.raises(CollectorError):
        ProcessCollector(fake_proc).collect()


def test_snapshot_tree_survives_cycles() -> None:
    def info(pid: int, ppid: int) -> ProcInfo:
        return ProcInfo(pid, ppid, "p", "", (), 0.0, "sleeping", 0, "", "")

    snapshot = ProcessSnapshot({1: info(1, 2), 2: info(2, 1), 3: info(3, 2)})

    assert sorted(snapshot.descendants(1)) == [2, 3]
    assert list(snapshot.ancestors(3)) == [2, 1]


# -- cgroup paths --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (f"/docker/{CID}", CID),
        (f"/system.slice/docker-{CID}.scope", CID),
        (f"/kubepods/burstable/pod1234-5678/{CID}", CID),
        (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-pod1.slice/crio-{CID}.scope", CID),
        (f"/system.slice/crio-conmon-{CID}.scope", ""),
        (f"/machine.slice/libpod-{CID}.scope/container", CID),
        (f"/machine.slice/libpod-conmon-{CID}.scope", ""),
        (f"/default/{CID}", CID),
        (f"/docker/{CID}/docker/{CID2}", CID2),
        (f"/system.slice/containerd-{CID}.scope", CID),
        ("/user.slice/user-1000.slice/session-3.scope", ""),
        ("/process_api/c5172180005f02aab2ce77b84aec18c3", ""),
        (f"/docker/{CID[:-1]}", ""),
        (f"/docker/{CID.upper()}", ""),
        ("/", ""),
        ("", ""),
    ],
)
def test_container_id_from_cgroup(path: str, expected: str) -> None:
    assert container_id_from_cgroup(path) == expected


def test_parse_cgroup_file_prefers_v2_then_v1() -> None:
    hybrid = f"12:memory:/docker/{CID}\n11:pids:/docker/{CID}\n0::/\n"
    unified = f"0::/system.slice/docker-{CID2}.scope\n"
    v1_only = f"4:cpu,cpuacct:/kubepods/pod1/{CID}\n3:name=systemd:/\n"

    assert parse_cgroup_file(hybrid) == ("/", CID)
    assert parse_cgroup_file(unified) == (f"/system.slice/docker-{CID2}.scope", CID2)
    assert parse_cgroup_file(v1_only) == ("", CID)
    assert parse_cgroup_file("") == ("", "")
