"""The cgroup v2 hierarchy: find it, place a process in it, freeze, thaw, kill and cap CPU.

Everything goes through the files the kernel documents in ``cgroup-v2.rst``:
``cgroup.procs``, ``cgroup.freeze`` and ``cgroup.events`` (freezer, Linux 5.2+),
``cgroup.kill`` (Linux 5.14+) and ``cpu.max`` (the cpu controller). The mount point
is read from ``mountinfo`` (``/sys/fs/cgroup`` on a unified host,
``/sys/fs/cgroup/unified`` on a hybrid one), never assumed. A missing mechanism
raises :class:`~backstop.core.errors.NotSupported`; a failed write raises
:class:`~backstop.core.errors.ActuationError`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from backstop.core.errors import ActuationError, BackstopError, NotFound, NotSupported

logger = logging.getLogger(__name__)

CGROUP2_FSTYPE = "cgroup2"
DEFAULT_PERIOD_US = 100_000
"""The kernel's default ``cpu.max`` period."""
MIN_QUOTA_US = 1_000
"""The smallest quota the kernel accepts in ``cpu.max``."""


@dataclass(frozen=True, slots=True)
class MountEntry:
    """One line of ``mountinfo``: what is mounted where."""

    root: str
    """The path inside the mounted filesystem that appears at ``mount_point``."""
    mount_point: Path
    fstype: str


def _unescape(field: str) -> str:
    r"""Undo the octal escapes mountinfo uses for space, tab, newline and backslash (``\040``)."""
    out: list[str] = []
    i = 0
    while i < len(field):
        chunk = field[i + 1 : i + 4]
        if field[i] == "\\" and len(chunk) == 3 and all(c in "01234567" for c in chunk):
            out.append(chr(int(chunk, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[MountEntry]:
    """Parse ``/proc/PID/mountinfo`` (proc(5)); malformed lines are skipped."""
    entries: list[MountEntry] = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right.split():
            continue
        entries.append(
            MountEntry(
                root=_unescape(fields[3]),
                mount_point=Path(_unescape(fields[4])),
                fstype=right.split()[0],
            )
        )
    return entries


def find_cgroup2_mount(mountinfo: Path) -> MountEntry:
    """Return the cgroup2 mount listed in ``mountinfo``; raise NotSupported when none is.

    When several are mounted, one that shows the whole hierarchy (root ``/``) wins.
    """
    try:
        text = mountinfo.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise NotSupported(f"cannot read {mountinfo}: {exc.strerror}") from exc
    mounts = [m for m in parse_mountinfo(text) if m.fstype == CGROUP2_FSTYPE]
    if not mounts:
        raise NotSupported(f"no cgroup2 filesystem is mounted (per {mountinfo})")
    return next((m for m in mounts if m.root == "/"), mounts[0])


@dataclass(frozen=True, slots=True)
class CpuMax:
    """The value of ``cpu.max``: at most ``quota_us`` of CPU time per ``period_us``."""

    quota_us: int | None
    """``None`` is the kernel's ``max``: no limit."""
    period_us: int = DEFAULT_PERIOD_US

    @classmethod
    def parse(cls, text: str) -> CpuMax:
        """Parse ``"max 100000"`` or ``"50000 100000"`` (the period is optional)."""
        fields = text.split()
        if not 1 <= len(fields) <= 2:
            raise ActuationError(f"unreadable cpu.max value {text!r}")
        try:
            quota = None if fields[0] == "max" else int(fields[0])
            period = int(fields[1]) if len(fields) == 2 else DEFAULT_PERIOD_US
        except ValueError as exc:
            raise ActuationError(f"unreadable cpu.max value {text!r}") from exc
        if period <= 0 or (quota is not None and quota <= 0):
            raise ActuationError(f"unreadable cpu.max value {text!r}")
        return cls(quota, period)

    @classmethod
    def for_cores(cls, cores: float, period_us: int = DEFAULT_PERIOD_US) -> CpuMax:
        """The limit that allows ``cores`` CPUs' worth of time per period."""
        return cls(max(MIN_QUOTA_US, round(cores * period_us)), period_us)

    @property
    def cores(self) -> float | None:
        """The limit in CPUs, or ``None`` when unlimited."""
        return None if self.quota_us is None else self.quota_us / self.period_us

    def render(self) -> str:
        """The line to write to ``cpu.max``."""
        quota = "max" if self.quota_us is None else str(self.quota_us)
        return f"{quota} {self.period_us}"


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a workload sits in the cgroup tree and whether its cgroup is its own."""

    cgroup: str
    """The cgroup path of the root process (``/`` is the root cgroup)."""
    directory: Path
    dedicated: bool
    """True when freezing, killing or capping the cgroup touches only the workload."""
    reason: str
    """Why the cgroup is or is not dedicated, for the outcome's detail."""


class CgroupV2:
    """The cgroup v2 hierarchy mounted at ``mount`` (filesystem roots injectable for tests)."""

    def __init__(
        self,
        mount: Path,
        *,
        mount_root: str = "/",
        proc_root: Path = Path("/proc"),
        poll_interval_s: float = 0.005,
    ) -> None:
        self.mount = mount
        self.mount_root = PurePosixPath(mount_root)
        self.proc_root = proc_root
        self.poll_interval_s = poll_interval_s

    @classmethod
    def discover(
        cls, *, proc_root: Path = Path("/proc"), mountinfo: Path | None = None
    ) -> CgroupV2:
        """Find the cgroup2 mount from ``mountinfo`` (default: ``proc_root/self/mountinfo``)."""
        entry = find_cgroup2_mount(mountinfo or proc_root / "self" / "mountinfo")
        return cls(entry.mount_point, mount_root=entry.root, proc_root=proc_root)

    def interfaces(self) -> frozenset[str]:
        """Which of ``cgroup.freeze``, ``cgroup.kill`` and ``cpu.max`` this host offers.

        The freezer and kill files exist only in non-root cgroups, so the first child
        cgroup of the mount is probed; ``cpu.max`` needs the cpu controller in this
        hierarchy (on a hybrid host it is usually bound to cgroup v1 instead).
        """
        found: set[str] = set()
        probe = next(iter(_children(self.mount)), None)
        if probe is not None:
            found |= {"cgroup.freeze", "cgroup.kill"} & {p.name for p in probe.iterdir()}
        with contextlib.suppress(BackstopError):
            if "cpu" in self._read(self.mount / "cgroup.controllers").split():
                found.add("cpu.max")
        return frozenset(found)

    # -- placement -------------------------------------------------------------------------

    def cgroup_of(self, pid: int) -> str:
        """The cgroup v2 path of ``pid``: the ``0::`` line of ``/proc/PID/cgroup``."""
        path = self.proc_root / str(pid) / "cgroup"
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except (FileNotFoundError, ProcessLookupError) as exc:
            raise NotFound(f"process {pid} does not exist") from exc
        except OSError as exc:
            raise ActuationError(f"cannot read {path}: {exc.strerror}") from exc
        for line in text.splitlines():
            if line.startswith("0::"):
                return line[3:].removesuffix(" (deleted)") or "/"
        raise NotSupported(f"process {pid} has no cgroup v2 membership (no 0:: line)")

    def directory(self, cgroup: str) -> Path:
        """The directory of cgroup path ``cgroup`` under the mount."""
        try:
            relative = PurePosixPath(cgroup).relative_to(self.mount_root)
        except ValueError as exc:
            raise NotSupported(
                f"cgroup {cgroup} is outside the mounted part {self.mount_root} of the hierarchy"
            ) from exc
        return self.mount / relative

    def directory_of(self, pid: int) -> Path:
        """The cgroup directory of ``pid``."""
        return self.directory(self.cgroup_of(pid))

    def is_root(self, directory: Path) -> bool:
        """Whether ``directory`` is the root cgroup, which cannot be frozen or capped."""
        return directory == self.mount and self.mount_root == PurePosixPath("/")

    def procs(self, directory: Path, *, recursive: bool = True) -> frozenset[int]:
        """The pids in ``cgroup.procs`` of ``directory`` and, if recursive, of its descendants.

        A ``0`` stands for a process in another pid namespace.
        """
        pids: set[int] = set()
        directories = [directory]
        while directories:
            current = directories.pop()
            try:
                text = self._read(current / "cgroup.procs")
            except NotFound:
                if current == directory:
                    raise
                continue  # a child cgroup removed while we walked the tree
            pids.update(int(field) for field in text.split())
            if recursive:
                directories.extend(_children(current))
        return frozenset(pids)

    def placement(self, root_pid: int, tree_pids: Collection[int], *, agent_pid: int) -> Placement:
        """Decide whether the cgroup of ``root_pid`` holds the workload tree and nothing else.

        Dedicated means: not the root cgroup; its processes (child cgroups included) are
        all in ``tree_pids``; every pid of ``tree_pids`` is in it; the agent is not.
        """
        cgroup = self.cgroup_of(root_pid)
        directory = self.directory(cgroup)
        if self.is_root(directory):
            return Placement(cgroup, directory, False, "the workload is in the root cgroup")
        members = self.procs(directory)
        tree = frozenset(tree_pids)
        if agent_pid in members:
            reason = f"the agent (pid {agent_pid}) is in cgroup {cgroup}"
            return Placement(cgroup, directory, False, reason)
        if foreign := sorted(members - tree):
            reason = f"cgroup {cgroup} also holds pids {foreign[:8]} outside the workload"
            return Placement(cgroup, directory, False, reason)
        if outside := sorted(tree - members):
            reason = f"workload pids {outside[:8]} are outside cgroup {cgroup}"
            return Placement(cgroup, directory, False, reason)
        return Placement(cgroup, directory, True, f"cgroup {cgroup} holds only the workload")

    # -- freezer ---------------------------------------------------------------------------

    def events(self, directory: Path) -> dict[str, int]:
        """The keys of ``cgroup.events`` (``populated``, ``frozen``) as integers."""
        events: dict[str, int] = {}
        for line in self._read(directory / "cgroup.events").splitlines():
            key, _, value = line.partition(" ")
            if value.strip().isdigit():
                events[key] = int(value)
        return events

    def freeze_requested(self, directory: Path) -> bool:
        """Whether ``cgroup.freeze`` of ``directory`` itself reads 1."""
        return self._read(directory / "cgroup.freeze").strip() == "1"

    def frozen(self, directory: Path) -> bool:
        """Whether the kernel reports the cgroup frozen (``frozen 1`` in ``cgroup.events``)."""
        return self.events(directory).get("frozen") == 1

    def freeze(self, directory: Path, *, timeout_s: float) -> bool:
        """Write 1 to ``cgroup.freeze``; return whether ``frozen 1`` came within the timeout.

        On False the freeze stays requested: the kernel completes it once every task
        reaches a freezable point (e.g. returns from an uninterruptible syscall).
        """
        self._write(directory / "cgroup.freeze", "1")
        return self._await_frozen(directory, True, timeout_s)

    def thaw(self, directory: Path, *, timeout_s: float) -> bool:
        """Write 0 to ``cgroup.freeze``; return whether ``frozen 0`` came within the timeout."""
        self._write(directory / "cgroup.freeze", "0")
        return self._await_frozen(directory, False, timeout_s)

    def _await_frozen(self, directory: Path, frozen: bool, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.frozen(directory) == frozen:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(self.poll_interval_s)

    # -- kill ------------------------------------------------------------------------------

    def can_kill(self, directory: Path) -> bool:
        """Whether ``cgroup.kill`` exists (Linux 5.14+, not in the root cgroup)."""
        return (directory / "cgroup.kill").is_file()

    def kill(self, directory: Path) -> None:
        """SIGKILL every process in the cgroup and its descendants through ``cgroup.kill``."""
        if not self.can_kill(directory):
            raise NotSupported(f"{directory} has no cgroup.kill (needs Linux 5.14+)")
        self._write(directory / "cgroup.kill", "1")

    def await_empty(self, directory: Path, *, timeout_s: float) -> frozenset[int]:
        """Wait until the cgroup holds no process; return the pids left at the deadline."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = self.procs(directory)
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(self.poll_interval_s)

    # -- cpu.max ---------------------------------------------------------------------------

    def read_cpu_max(self, directory: Path) -> CpuMax:
        """Read ``cpu.max``; NotSupported when the cpu controller is not enabled there."""
        path = directory / "cpu.max"
        if not path.is_file():
            raise NotSupported(f"no cpu.max in {directory}: the cpu controller is not enabled")
        return CpuMax.parse(self._read(path))

    def write_cpu_max(self, directory: Path, value: CpuMax) -> CpuMax:
        """Write ``cpu.max``; return the previous value, to hand back for a restore."""
        previous = self.read_cpu_max(directory)
        try:
            self._write(directory / "cpu.max", value.render())
        except ActuationError as exc:
            cause = exc.__cause__
            if isinstance(cause, OSError) and cause.errno in (errno.EACCES, errno.EPERM):
                raise NotSupported(f"cpu.max in {directory} is not writable") from cause
            raise
        return previous

    # -- file access -----------------------------------------------------------------------

    def _read(self, path: Path) -> str:
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            if not path.parent.is_dir():
                raise NotFound(f"cgroup {path.parent} does not exist") from exc
            raise NotSupported(f"{path} does not exist on this kernel or cgroup") from exc
        except OSError as exc:
            raise ActuationError(f"cannot read {path}: {exc.strerror}") from exc

    def _write(self, path: Path, value: str) -> None:
        if not path.is_file():
            if not path.parent.is_dir():
                raise NotFound(f"cgroup {path.parent} does not exist")
            raise NotSupported(f"{path} does not exist on this kernel or cgroup")
        try:
            with path.open("w", encoding="utf-8") as handle:
                handle.write(value)
        except OSError as exc:
            raise ActuationError(f"cannot write {value!r} to {path}: {exc.strerror}") from exc
        logger.debug("wrote %r to %s", value, path)


def _children(directory: Path) -> list[Path]:
    try:
        return [entry for entry in directory.iterdir() if entry.is_dir()]
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ActuationError(f"cannot list {directory}: {exc.strerror}") from exc
