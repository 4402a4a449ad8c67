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
import re
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

from backstop.core.errors import CollectorError

log = logging.getLogger(__name__)

PF_KTHREAD = 0x00200000
"""``task->flags`` bit of a kernel thread (``include/linux/sched.h``)."""

_READ_BYTES = 65536

COMM_MAX = 15
"""The kernel truncates ``comm`` to 15 characters."""

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

_CONTAINER_SEGMENT = re.compile(
    r"^(?:(?:docker|cri-containerd|containerd|crio|libpod)-)?([0-9a-f]{64})(?:\.scope)?$"
)
"""One cgroup path segment that names a container: ``<id>`` (docker/containerd cgroupfs,
kubepods cgroupfs), ``docker-<id>.scope``, ``cri-containerd-<id>.scope``, ``crio-<id>.scope``,
``libpod-<id>.scope`` (systemd drivers). ``crio-conmon-`` and ``libpod-conmon-`` scopes hold
the runtime's monitor, not the container, and do not match."""


_HEX_RUN = re.compile(r"[0-9a-f]{64}")


def container_id_from_cgroup(path: str) -> str:
    """The container id named by a cgroup path, or ``""``.

    The innermost match wins, so a container nested in another (docker in docker) is
    reported as itself.
    """
    if not _HEX_RUN.search(path):
        return ""
    for segment in reversed(path.split("/")):
        match = _CONTAINER_SEGMENT.match(segment)
        if match:
            return match.group(1)
    return ""


def parse_cgroup_file(text: str) -> tuple[str, str]:
    """``(cgroup v2 path, container id)`` from the text of ``/proc/PID/cgroup``.

    The v2 path is the ``0::`` line's (``""`` on a v1-only host). The container id comes
    from the v2 path, or else from the first v1 hierarchy whose path names one (hybrid
    hosts, where container runtimes place processes in the v1 hierarchies only).
    """
    v2_path = ""
    v1_paths: list[str] = []
    maybe_container = bool(_HEX_RUN.search(text))
    for line in text.splitlines():
        hierarchy, sep, rest = line.partition(":")
        if not sep:
            continue
        _controllers, sep, path = rest.partition(":")
        if not sep:
            continue
        if hierarchy == "0":
            v2_path = path
        else:
            v1_paths.append(path)
    if not maybe_container:
        return v2_path, ""
    container_id = container_id_from_cgroup(v2_path)
    if not container_id:
        for path in v1_paths:
            container_id = container_id_from_cgroup(path)
            if container_id:
                break
    return v2_path, container_id


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


@dataclass(frozen=True, slots=True)
class _Stat:
    comm: str
    state: str
    ppid: int
    flags: int
    start_ticks: int
    exec_mark: int


class _Vanished(Exception):
    """The process exited while it was being read."""


class ProcessCollector:
    """Samples the process table; ``collect()`` returns a :class:`ProcessSnapshot`."""

    name = "processes"

    def __init__(
        self,
        proc_root: Path = Path("/proc"),
        *,
        refresh_interval_s: float = 10.0,
        cgroup_refresh_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._root = proc_root
        self._wall_clock = wall_clock
        self._prefix = f"{proc_root}/"
        self._refresh_interval_s = refresh_interval_s
        self._clock = clock
        self._clk_tck = os.sysconf("SC_CLK_TCK")
        self._boot_time: float | None = None
        self._entries: dict[int, _Entry] = {}
        self._skipped: dict[int, tuple[int, int]] = {}
        """Kernel threads by pid: (directory inode, start ticks), so they are read once."""
        self._cgroup_refresh_interval_s = cgroup_refresh_interval_s
        self._last_refresh: float | None = None
        self._last_cgroup_refresh: float | None = None

    def collect(self) -> ProcessSnapshot:
        """Read the process table; see the module docstring for what is read when."""
        listing = self._list()
        now = self._clock()
        full = _due(self._last_refresh, now, self._refresh_interval_s)
        if full:
            self._last_refresh = now
        cgroups = full and _due(self._last_cgroup_refresh, now, self._cgroup_refresh_interval_s)
        if cgroups:
            self._last_cgroup_refresh = now
        for gone in self._entries.keys() - listing.keys():
            del self._entries[gone]
        for gone in self._skipped.keys() - listing.keys():
            del self._skipped[gone]
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
            except _Vanished:
                log.debug("process vanished during scan", extra={"pid": pid})
                self._entries.pop(pid, None)
        return ProcessSnapshot(
            MappingProxyType({pid: entry.info for pid, entry in self._entries.items()})
        )

    def _list(self) -> dict[int, int]:
        try:
            with os.scandir(self._root) as entries:
                return {int(e.name): e.inode() for e in entries if e.name.isdigit()}
        except OSError as exc:
            raise CollectorError(f"cannot list {self._root}: {exc}") from exc

    def _read(self, pid: int, dir_inode: int, *, reread_cgroup: bool) -> None:
        stat = self._read_stat(pid)
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
                    cgroup, container_id = self._read_cgroup(pid)
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

    def _entry(self, dir_inode: int, stat: _Stat, info: ProcInfo) -> _Entry:
        young = self._wall_clock() - info.create_time < YOUNG_S
        return _Entry(dir_inode, stat.start_ticks, stat.comm, stat.exec_mark, young, info)

    def _read_new(self, pid: int, stat: _Stat) -> ProcInfo:
        cmdline = self._read_cmdline(pid)
        cgroup, container_id = self._read_cgroup(pid)
        return ProcInfo(
            pid=pid,
            ppid=stat.ppid,
            name=_full_name(stat.comm, cmdline),
            exe=self._read_exe(pid),
            cmdline=cmdline,
            create_time=stat.start_ticks / self._clk_tck + self._boot(),
            status=_STATUS.get(stat.state, stat.state),
            uid=self._read_uid(pid),
            cgroup=cgroup,
            container_id=container_id,
        )

    def _path(self, pid: int, name: str) -> str:
        return f"{self._prefix}{pid}/{name}"

    def _read_bytes(self, pid: int, name: str) -> bytes:
        """The whole of ``/proc/PID/name`` (plain syscalls: this runs for every process)."""
        fd = os.open(self._path(pid, name), os.O_RDONLY | os.O_CLOEXEC)
        try:
            parts = []
            while block := os.read(fd, _READ_BYTES):
                parts.append(block)
            return b"".join(parts)
        finally:
            os.close(fd)

    def _read_stat(self, pid: int) -> _Stat:
        try:
            data = self._read_bytes(pid, "stat")
            left, right = data.index(b"("), data.rindex(b")")
            fields = data[right + 2 :].split()
            return _Stat(
                comm=data[left + 1 : right].decode("utf-8", "replace"),
                state=fields[0].decode("ascii", "replace"),
                ppid=int(fields[1]),
                flags=int(fields[6]),
                start_ticks=int(fields[19]),
                exec_mark=int(fields[45]) if len(fields) > 45 else 0,
            )
        except (OSError, ValueError, IndexError) as exc:
            raise _Vanished from exc

    def _read_cmdline(self, pid: int) -> tuple[str, ...]:
        try:
            data = self._read_bytes(pid, "cmdline")
        except OSError as exc:
            raise _Vanished from exc
        if not data:
            return ()
        if data.endswith(b"\0"):
            parts = data[:-1].split(b"\0")
        else:
            # setproctitle-style: the process rewrote its argv as one space-separated string.
            parts = data.replace(b"\0", b" ").split()
        return tuple(part.decode("utf-8", "replace") for part in parts)

    def _read_exe(self, pid: int) -> str:
        try:
            target = os.readlink(self._path(pid, "exe"))
        except OSError:
            return ""
        return target.removesuffix(" (deleted)")

    def _read_uid(self, pid: int) -> int:
        try:
            status = self._read_bytes(pid, "status")
            start = status.index(b"\nUid:") + 5
            return int(status[start : status.index(b"\n", start)].split()[0])
        except (OSError, ValueError, IndexError) as exc:
            raise _Vanished from exc

    def _read_cgroup(self, pid: int) -> tuple[str, str]:
        try:
            text = self._read_bytes(pid, "cgroup").decode("utf-8", "replace")
        except OSError as exc:
            raise _Vanished from exc
        return parse_cgroup_file(text)

    def _boot(self) -> float:
        if self._boot_time is None:
            try:
                with (self._root / "stat").open("rb") as stat:
                    for line in stat:
                        if line.startswith(b"btime"):
                            self._boot_time = float(line.split()[1])
                            break
            except (OSError, ValueError, IndexError) as exc:
                raise CollectorError(f"cannot read boot time from {self._root}/stat") from exc
            if self._boot_time is None:
                raise CollectorError(f"no btime line in {self._root}/stat")
        return self._boot_time


def _due(last: float | None, now: float, interval: float) -> bool:
    return last is None or now - last >= interval


def _full_name(comm: str, cmdline: tuple[str, ...]) -> str:
    """The process name; ``comm`` is cut at 15 characters, so complete it from argv[0]."""
    if len(comm) >= COMM_MAX and cmdline:
        base = os.path.basename(cmdline[0])
        if base.startswith(comm):
            return base
    return comm
