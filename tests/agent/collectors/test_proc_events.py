"""The process collector driven by the kernel's proc connector: real child processes, real
events; the datagram parser against packed ``cn_proc`` messages."""

from __future__ import annotations

import errno
import os
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from backstop.agent.collectors import proc_events
from backstop.agent.collectors.proc_events import Changes, ProcEvents, parse_event
from backstop.agent.collectors.processes import EVENT_GRACE_S, YOUNG_S, ProcessCollector
from tests.agent.collectors.test_processes import stat_state, wait_for
from tests.agent.conftest import FakeClock
from tests.agent.fingerprint.children import Spawner

HEADERS = struct.pack("=IHHII", 76, 3, 0, 0, 0) + struct.pack("=IIIIHH", 1, 1, 0, 0, 40, 0)


def datagram(what: int, *ids: int) -> bytes:
    """One ``cn_proc`` event as the kernel sends it: headers, what/cpu/time, four ids."""
    padded = (*ids, 0, 0, 0, 0)[:4]
    return HEADERS + struct.pack("=IIQ", what, 0, 0) + struct.pack("=IIII", *padded) + bytes(8)


# -- the parser ----------------------------------------------------------------------------


def test_events_name_processes_and_leave_threads_out() -> None:
    changes = Changes()
    for message in (
        datagram(proc_events.PROC_EVENT_FORK, 10, 10, 11, 11),  # a process forks a process
        datagram(proc_events.PROC_EVENT_FORK, 10, 10, 12, 10),  # ... and starts a thread
        datagram(0x2, 13, 13),  # exec
        datagram(0x200, 14, 14),  # a process renames itself
        datagram(0x200, 15, 10),  # a thread of 10 names itself
        datagram(proc_events.PROC_EVENT_EXIT, 16, 16),
        datagram(proc_events.PROC_EVENT_EXIT, 17, 10),  # a thread of 10 ends
    ):
        assert parse_event(message, changes) is None

    assert changes.touched == {11, 13, 14}
    assert changes.exited == {16}


def test_the_subscription_answer_carries_its_error() -> None:
    assert parse_event(datagram(proc_events.PROC_EVENT_NONE, 0), Changes()) == 0
    refused = datagram(proc_events.PROC_EVENT_NONE, errno.EPERM)
    assert parse_event(refused, Changes()) == errno.EPERM
    assert parse_event(b"short", Changes()) is None


class OverflowingSocket:
    """A socket whose buffer overflowed: ENOBUFS once, then what was left, then empty."""

    def __init__(self) -> None:
        self.replies: list[bytes | OSError] = [
            OSError(errno.ENOBUFS, "No buffer space available"),
            datagram(proc_events.PROC_EVENT_FORK, 1, 1, 2, 2),
        ]

    def recv(self, _size: int) -> bytes:
        if not self.replies:
            raise BlockingIOError
        reply = self.replies.pop(0)
        if isinstance(reply, OSError):
            raise reply
        return reply


def test_an_overflow_is_reported_and_the_socket_emptied() -> None:
    sock = OverflowingSocket()
    events = ProcEvents(sock)  # type: ignore[arg-type]

    assert events.drain() is proc_events.OVERFLOWED
    assert sock.replies == []
    assert events.drain() == Changes()


# -- the collector, on real events ---------------------------------------------------------


@pytest.fixture
def settled() -> Callable[[], float]:
    """A wall clock by which every process is past :data:`YOUNG_S`: only events re-read."""
    return lambda: time.time() + YOUNG_S


@pytest.fixture
def collector(settled: Callable[[], float]) -> Iterator[ProcessCollector]:
    collector = ProcessCollector(
        use_events=True, event_refresh_interval_s=3600, clock=FakeClock(), wall_clock=settled
    )
    assert collector.uses_events, "the proc connector needs root in the initial namespaces"
    yield collector
    collector.close()


def count_listings(collector: ProcessCollector) -> list[int]:
    """Count the collector's listings of /proc from now on."""
    files = collector._files
    listing = files.listing
    calls: list[int] = []

    def counted() -> dict[int, int]:
        calls.append(1)
        return listing()

    files.listing = counted  # type: ignore[method-assign]
    return calls


def test_new_processes_and_exec_show_without_listing_proc(
    collector: ProcessCollector, spawner: Spawner
) -> None:
    collector.collect()  # the first collect lists /proc
    listings = count_listings(collector)
    child = spawner.command(["sh", "-c", "echo ready; read line; exec sleep 600"])
    child.read_line()

    before = collector.collect().processes[child.pid]
    child.send("go")
    wait_for(lambda: Path(f"/proc/{child.pid}/comm").read_text().strip() == "sleep")
    after = collector.collect().processes[child.pid]

    assert before.name == "sh"
    assert after.name == "sleep"  # an exec of a settled process: read again at once
    assert after.cmdline == ("sleep", "600")
    assert after.create_time == before.create_time
    assert listings == []


def test_an_unchanged_table_is_the_same_snapshot(
    collector: ProcessCollector, spawner: Spawner, monkeypatch: pytest.MonkeyPatch
) -> None:
    child = spawner.python("import sys; print('ready', flush=True); sys.stdin.read()")
    child.read_line()
    first = collector.collect()
    again = collector.collect()
    assert again.processes[child.pid] is first.processes[child.pid]  # not read again

    assert collector._events is not None
    monkeypatch.setattr(collector._events, "drain", Changes)  # a quiet node: no events
    quiet = collector.collect()
    assert collector.collect() is quiet


def test_exit_zombie_reap_and_orphans(collector: ProcessCollector, spawner: Spawner) -> None:
    child = spawner.python(
        "import subprocess, sys, time\n"
        "kid = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print(kid.pid, flush=True)\n"
        "sys.stdin.readline()\n"
    )
    grandchild = int(child.read_line())
    snapshot = collector.collect()
    assert snapshot.processes[grandchild].ppid == child.pid

    child.send("exit")
    wait_for(lambda: stat_state(child.pid) == "Z")  # exited; the test has not reaped it
    wait_for(lambda: psutil.Process(grandchild).ppid() != child.pid)
    zombie = collector.collect()
    assert zombie.processes[child.pid].status == "zombie"
    assert zombie.processes[grandchild].ppid == psutil.Process(grandchild).ppid()

    child.popen.wait(timeout=10)  # reaping sends no event: the collector looks again itself
    assert child.pid not in collector.collect().processes


def test_processes_asked_for_are_read_without_an_event(
    collector: ProcessCollector, spawner: Spawner, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector.collect()
    assert collector._events is not None
    monkeypatch.setattr(collector._events, "drain", Changes)  # events that never come
    child = spawner.python("import sys; print('ready', flush=True); sys.stdin.read()")
    child.read_line()

    assert child.pid not in collector.collect().processes
    assert child.pid in collector.collect(also=[child.pid]).processes
    assert child.pid in collector.collect().processes


def test_an_overflow_lists_proc_at_once(
    collector: ProcessCollector, spawner: Spawner, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector.collect()
    assert collector._events is not None
    monkeypatch.setattr(collector._events, "drain", lambda: proc_events.OVERFLOWED)
    listings = count_listings(collector)
    child = spawner.python("import sys; print('ready', flush=True); sys.stdin.read()")
    child.read_line()

    assert child.pid in collector.collect().processes
    assert listings == [1]
    assert collector.uses_events  # an overflow is no sign of a broken kernel


def test_missed_events_turn_events_off(
    spawner: Spawner, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    collector = ProcessCollector(
        use_events=True,
        event_refresh_interval_s=60,
        clock=clock,
        wall_clock=lambda: time.time() + EVENT_GRACE_S + 1,  # everyone is old enough
    )
    collector.collect()
    assert collector._events is not None
    monkeypatch.setattr(collector._events, "drain", Changes)  # a kernel that sends nothing
    child = spawner.python("import sys; print('ready', flush=True); sys.stdin.read()")
    child.read_line()
    assert child.pid not in collector.collect().processes

    clock.now += 60
    found = collector.collect()

    assert child.pid in found.processes  # the listing finds it ...
    assert not collector.uses_events  # ... and the collector stops trusting events
    assert "process events missed processes" in caplog.text
    assert child.pid in collector.collect().processes


def test_events_are_not_used_for_another_proc_root(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    assert not ProcessCollector(tmp_path, use_events=True).uses_events
    assert not ProcessCollector(use_events=False).uses_events
    assert os.readlink("/proc/self") == str(os.getpid())


def test_an_agent_in_its_own_network_namespace_listens_in_the_hosts() -> None:
    # as in a pod with hostPID but not hostNetwork: the connector is the host namespace's
    script = (
        "import os, subprocess, sys, time\n"
        "from pathlib import Path\n"
        "from backstop.agent.collectors.proc_events import ProcEvents\n"
        "assert ProcEvents.open(host_netns=Path(sys.argv[1]).parent / 'ns' / 'no') is None\n"
        "events = ProcEvents.open(host_netns=Path(sys.argv[1]))\n"
        "child = subprocess.Popen(['true']); child.wait(); time.sleep(0.1)\n"
        "changes = events.drain()\n"
        "print(child.pid in changes.touched, child.pid in changes.exited)\n"
    )
    own = f"/proc/{os.getpid()}/ns/net"
    out = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", script, own],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert out.stdout.split() == ["True", "True"]
