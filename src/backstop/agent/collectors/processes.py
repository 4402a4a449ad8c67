"""Process collector: the node's process table, read from ``/proc``.

One pass lists ``/proc`` (a single ``getdents``); ``/proc/PID/stat`` is parsed only for
processes not seen before, for processes whose parent has gone (they were re-parented), and
for everyone once per ``refresh_interval_s`` (fresh ``status``/``ppid``; a changed ``comm``
means the process ran ``exec`` and everything is read again). ``/proc/PID/cgroup`` is read
for new processes, after ``exec`` (container runtimes join the cgroup before they exec the
entrypoint) and for everyone once per ``cgroup_refresh_interval_s`` (processes moved by hand).
A process younger than :data:`YOUNG_S` is read again at every collect: a child is listed
between its ``fork`` and its ``exec`` (still its parent's command line and cgroup), and a
``python`` that execs ``python`` keeps its ``comm``, so an ``exec`` is also told by the
address of its argument block (``arg_start`` in ``stat``, new at every ``exec``).
What never changes for a process incarnation (exe, command line, uid) is cached per
``(pid, start time)``, so a node with 1,000 processes costs one directory listing per sample
in the steady state (measured on a 2-core VM: about 2.5 ms per sample, plus a 20 ms refresh
every 10 s).

With ``use_events`` (the agent's default) and the kernel's proc connector available
(:mod:`~backstop.agent.collectors.proc_events`: root, the initial PID namespace), ``/proc``
is not listed at every collect: only the processes that events name (created, ``exec``,
renamed, exited), the young ones, the children of those that exit, and the pids the caller
asks for (``also``: the GPU's processes) are read, 0.2 ms per sample at 1,000 processes. An
exiting process is read again at every collect until it has gone (its exit event comes
before it turns zombie and is reaped, and neither sends another). The listing and the full
refresh run once per ``event_refresh_interval_s`` instead, and at once when the socket
overflowed. That listing also checks the events: a process it finds that is older than
:data:`EVENT_GRACE_S` and that no event named means events are being missed (a kernel that
does not send them here), and the collector lists ``/proc`` at every collect from then on,
with a warning. The snapshot is built again only when something in it changed.

The ``/proc`` directory entry's inode number tells a reused pid apart from the process that
held it before: procfs gives each process's directory a new inode, so an unchanged inode
number means the same process, and a changed one triggers a fresh read.

The files are read directly rather than through psutil: psutil reads the root named by its
global ``psutil.PROCFS_PATH``, not this collector's ``proc_root``, and spends about five
times as long per process. ``create_time`` is computed exactly as psutil does
(``btime + starttime / CLK_TCK``), so the two agree to the bit.

Kernel threads (``PF_KTHREAD``) are left out. A process that vanishes mid-scan is skipped
with a debug line.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

from backstop.agent.collectors.proc_events import Changes, ProcEvents
from backstop.agent.collectors.proc_files import ProcFiles, ProcStat, Vanished

log = logging.getLogger(__name__)

PF_KTHREAD = 0x00200000
"""``task->flags`` bit of a kernel thread (``include/linux/sched.h``)."""

COMM_MAX = 15
"""The kernel truncates ``comm`` to 15 characters."""

EVENT_GRACE_S = 2.0
"""A process older than this that a listing finds and no event named was missed by events."""

YOUNG_S = 3.0
"""A process this young may still be between ``fork`` and ``exec``: read it at every collect."""

_STATUS = {
    "R": "running",
    "S": "sleeping",
    "D": "disk-sleep",
    "T": "stopped",
    "t": "tracing-stop",
    "Z": "zombie",
    "X": "dead",
    "x": "dead",
    "K": "wake-kill",
    "W": "waking",
    "P": "parked",
    "I": "idle",
}
"""``/proc/PID/stat`` state letters, named as psutil names them."""


@dataclass(frozen=True, slots=True)
class ProcInfo:
    """One process as the collector saw it."""

    pid: int
    ppid: int
    name: str
    exe: str
    """Path of the executable; ``""`` when unreadable. A ``" (deleted)"`` suffix is removed."""
    cmdline: tuple[str, ...]
    """The raw command line; redact it (fingerprint.redact) before it leaves the node."""
    create_time: float
    """Seconds since the epoch, as psutil computes it."""
    status: str
    """psutil's status names: running, sleeping, disk-sleep, stopped, zombie, ..."""
    uid: int
    """Real user id."""
    cgroup: str
    """cgroup v2 path (the ``0::`` line of ``/proc/PID/cgroup``), or ``""``."""
    container_id: str
    """Container id (64 hex digits) parsed from the cgroup path, or ``""``."""


@dataclass(frozen=True, slots=True)
class ProcessSnapshot:
    """The process table at one instant, with the parent/child tree."""

    processes: Mapping[int, ProcInfo]
    _children: Mapping[int, tuple[int, ...]] = field(
        init=False, repr=False, compare=False, default_factory=lambda: MappingProxyType({})
    )

    def __post_init__(self) -> None:
        children: dict[int, list[int]] = {}
        for info in self.processes.values():
            if info.ppid != info.pid:
                children.setdefault(info.ppid, []).append(info.pid)
        frozen = {ppid: tuple(sorted(kids)) for ppid, kids in children.items()}
        object.__setattr__(self, "_children", MappingProxyType(frozen))

    def children(self, pid: int) -> tuple[int, ...]:
        """Direct children of ``pid`` present in the snapshot, in pid order."""
        return self._children.get(pid, ())

    def descendants(self, pid: int) -> tuple[int, ...]:
        """Every process below ``pid`` (children, grandchildren, ...), breadth first."""
        found: list[int] = []
        seen = {pid}
        queue = deque(self.children(pid))
        while queue:
            child = queue.popleft()
            if child in seen:
                continue
            seen.add(child)
            found.append(child)
            queue.extend(self.children(child))
        return tuple(found)

    def ancestors(self, pid: int) -> Iterator[int]:
        """Parents of ``pid`` present in the snapshot, nearest first."""
        seen = {pid}
        info = self.processes.get(pid)
        while info is not None and info.ppid not in seen and info.ppid in self.processes:
            seen.add(info.ppid)
            yield info.ppid
            info = self.processes.get(info.ppid)


@dataclass(slots=True)
class _Entry:
    """What the collector remembers about one process incarnation."""

    dir_inode: int
    start_ticks: int
    comm: str
    exec_mark: int
    """``arg_start`` from ``stat``: where the command line lies; a new one at every ``exec``."""
    young: bool
    """Read while younger than :data:`YOUNG_S`: read again at the next collect."""
    info: ProcInfo


class ProcessCollector:
    """Samples the process table; ``collect()`` returns a :class:`ProcessSnapshot`."""

    name = "processes"

    def __init__(
        self,
        proc_root: Path = Path("/proc"),
        *,
        refresh_interval_s: float = 10.0,
        cgroup_refresh_interval_s: float = 60.0,
        use_events: bool = False,
        event_refresh_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._wall_clock = wall_clock
        self._files = ProcFiles(proc_root)
        self._refresh_interval_s = refresh_interval_s
        self._clock = clock
        self._entries: dict[int, _Entry] = {}
        self._skipped: dict[int, tuple[int, int]] = {}
        """Kernel threads by pid: (directory inode, start ticks), so they are read once."""
        self._cgroup_refresh_interval_s = cgroup_refresh_interval_s
        self._last_refresh: float | None = None
        self._last_cgroup_refresh: float | None = None
        self._event_refresh_s = event_refresh_interval_s
        self._events = ProcEvents.open() if use_events and _own_proc(proc_root) else None
        self._exiting: dict[int, int] = {}
        """Processes an event said exit, by pid: start ticks (-1: unknown), until they go."""
        self._snapshot: ProcessSnapshot | None = None

    def collect(self, also: Iterable[int] = ()) -> ProcessSnapshot:
        """Read the process table; see the module docstring for what is read when.

        ``also``: pids to look up even if no event named them (the GPU's processes), so a
        process is never missing for want of an event."""
        now = self._clock()
        changes = None if self._events is None else self._events.drain()
        if changes is None or _due(self._last_refresh, now, self._full_interval_s()):
            self._scan(now, changes)
        else:
            self._apply(changes, also)
        if self._snapshot is None:
            self._snapshot = ProcessSnapshot(
                MappingProxyType({pid: entry.info for pid, entry in self._entries.items()})
            )
        return self._snapshot

    @property
    def uses_events(self) -> bool:
        """Whether the kernel's process events drive the collector (else: a listing a collect)."""
        return self._events is not None

    def close(self) -> None:
        """Stop listening for process events (the collector lists ``/proc`` from now on)."""
        if self._events is not None:
            self._events.close()
            self._events = None

    def _full_interval_s(self) -> float:
        return self._refresh_interval_s if self._events is None else self._event_refresh_s

    def _scan(self, now: float, changes: Changes | None) -> None:
        """List ``/proc`` and read what the listing says is new, re-used or stale."""
        listing = self._files.listing()
        self._snapshot = None
        if self._events is not None and changes is None:
            log.debug("process events overflowed: listing /proc")
        if self._last_refresh is None:
            changes = None  # the first listing: every process is new to it, not missed
        full = _due(self._last_refresh, now, self._full_interval_s())
        if full:
            self._last_refresh = now
        cgroups = full and _due(self._last_cgroup_refresh, now, self._cgroup_refresh_interval_s)
        if cgroups:
            self._last_cgroup_refresh = now
        for gone in self._entries.keys() - listing.keys():
            del self._entries[gone]
        for gone in self._skipped.keys() - listing.keys():
            del self._skipped[gone]
        self._exiting = {p: t for p, t in self._exiting.items() if p in self._entries}
        missed: list[int] = []
        for pid, dir_inode in listing.items():
            entry = self._entries.get(pid)
            skipped = self._skipped.get(pid)
            if skipped is not None and skipped[0] == dir_inode:
                continue
            stale = (
                full
                or entry is None
                or entry.young
                or entry.dir_inode != dir_inode
                or (entry.info.ppid != 0 and entry.info.ppid not in listing)
            )
            if not stale:
                continue
            try:
                self._read(pid, dir_inode, reread_cgroup=cgroups)
            except Vanished:
                log.debug("process vanished during scan", extra={"pid": pid})
                self._entries.pop(pid, None)
                continue
            if entry is None and changes is not None and self._events_missed(pid, changes):
                missed.append(pid)
        if missed:
            log.warning(
                "process events missed processes: listing /proc at every sample from now on",
                extra={"processes": len(missed), "pids": missed[:10]},
            )
            self.close()

    def _events_missed(self, pid: int, changes: Changes) -> bool:
        """Whether events should have named ``pid``, new to this listing: it is older than
        :data:`EVENT_GRACE_S` and no event since the last look named it."""
        read = self._entries.get(pid)
        if read is None or pid in changes.touched:
            return False
        return self._wall_clock() - read.info.create_time > EVENT_GRACE_S

    def _apply(self, changes: Changes, also: Iterable[int]) -> None:
        """Read the processes that events named, that exit, that are young or asked for."""
        entries = self._entries
        for pid in changes.exited:
            entry = entries.get(pid)
            self._exiting[pid] = entry.start_ticks if entry is not None else -1
        pending = changes.touched | self._exiting.keys()
        pending.update(pid for pid in also if pid not in entries and pid not in self._skipped)
        if self._exiting or any(entry.young for entry in entries.values()):
            exiting = self._exiting
            # the young may still exec; the children of those that exit are re-parented
            pending.update(
                pid for pid, entry in entries.items() if entry.young or entry.info.ppid in exiting
            )
        for pid in pending:
            before = entries.get(pid)
            self._refresh(pid)
            after = entries.get(pid)
            if (before and before.info) is not (after and after.info):
                self._snapshot = None
        for pid, start_ticks in list(self._exiting.items()):
            entry = entries.get(pid)
            if entry is None or start_ticks not in (-1, entry.start_ticks):
                del self._exiting[pid]

    def _refresh(self, pid: int) -> None:
        """Read one process again (or forget it, if it has gone)."""
        try:
            dir_inode = os.stat(self._files.path(pid, "")).st_ino
        except OSError:
            self._entries.pop(pid, None)
            self._skipped.pop(pid, None)
            return
        skipped = self._skipped.get(pid)
        if skipped is not None and skipped[0] == dir_inode:
            return
        try:
            self._read(pid, dir_inode, reread_cgroup=False)
        except Vanished:
            self._entries.pop(pid, None)

    def _read(self, pid: int, dir_inode: int, *, reread_cgroup: bool) -> None:
        stat = self._files.stat(pid)
        if stat.flags & PF_KTHREAD:
            self._skipped[pid] = (dir_inode, stat.start_ticks)
            self._entries.pop(pid, None)
            return
        self._skipped.pop(pid, None)
        entry = self._entries.get(pid)
        status = _STATUS.get(stat.state, stat.state)
        if entry is not None and entry.start_ticks == stat.start_ticks:
            info = entry.info
            exec_seen = (stat.comm, stat.exec_mark) != (entry.comm, entry.exec_mark)
            if exec_seen:
                info = self._read_new(pid, stat)
            else:
                cgroup, container_id = info.cgroup, info.container_id
                if reread_cgroup or entry.young:
                    cgroup, container_id = self._files.cgroup(pid)
                if (stat.ppid, status, cgroup) != (info.ppid, info.status, info.cgroup):
                    info = replace(
                        info,
                        ppid=stat.ppid,
                        status=status,
                        cgroup=cgroup,
                        container_id=container_id,
                    )
            self._entries[pid] = self._entry(dir_inode, stat, info)
            return
        self._entries[pid] = self._entry(dir_inode, stat, self._read_new(pid, stat))

    def _entry(self, dir_inode: int, stat: ProcStat, info: ProcInfo) -> _Entry:
        young = self._wall_clock() - info.create_time < YOUNG_S
        return _Entry(dir_inode, stat.start_ticks, stat.comm, stat.exec_mark, young, info)

    def _read_new(self, pid: int, stat: ProcStat) -> ProcInfo:
        cmdline = self._files.cmdline(pid)
        cgroup, container_id = self._files.cgroup(pid)
        return ProcInfo(
            pid=pid,
            ppid=stat.ppid,
            name=_full_name(stat.comm, cmdline),
            exe=self._files.exe(pid),
            cmdline=cmdline,
            create_time=self._files.start_time(stat.start_ticks),
            status=_STATUS.get(stat.state, stat.state),
            uid=self._files.uid(pid),
            cgroup=cgroup,
            container_id=container_id,
        )


def _own_proc(proc_root: Path) -> bool:
    """Whether ``proc_root`` is a procfs of this process's PID namespace (event pids are
    the initial namespace's, and the kernel sends events only to a listener there)."""
    try:
        return os.readlink(proc_root / "self") == str(os.getpid())
    except OSError:
        return False


def _due(last: float | None, now: float, interval: float) -> bool:
    return last is None or now - last >= interval


def _full_name(comm: str, cmdline: tuple[str, ...]) -> str:
    """The process name; ``comm`` is cut at 15 characters, so complete it from argv[0]."""
    if len(comm) >= COMM_MAX and cmdline:
        base = os.path.basename(cmdline[0])
        if base.startswith(comm):
            return base
    return comm
