"""Process trees read from ``/proc``: who descends from whom, in which state, since when.

Reading only; signals are sent by :mod:`backstop.agent.actuators.signals`. A process is
identified by a :class:`ProcessRef` (pid plus start time in clock ticks since boot), so
an action prepared for one process never lands on a later process that reused its pid.
:class:`SignalGuard` names the pids no action may touch: 0, 1, the agent and its
ancestors.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from backstop.core.errors import ActuationError, NotFound

logger = logging.getLogger(__name__)

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
GONE_STATES = frozenset("ZXx")
"""Zombie or dead: the process has exited, only its exit status remains."""
STOPPED_STATE = "T"
"""Stopped by a job-control signal (``t`` is a tracing stop, which is something else)."""
START_TIME_TOLERANCE_S = 1.0
"""How far an epoch start time may drift: ``/proc/stat`` btime moves with clock adjustments."""


class ProcessGone(NotFound):
    """The process has exited (or never existed)."""


class PidReused(ActuationError):
    """The pid now belongs to another process than the one the action was meant for."""


class ProtectedProcess(ActuationError):
    """The pid is one Backstop never signals (0, 1, the agent, an ancestor of the agent)."""


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of ``/proc/PID/stat`` the actuators need."""

    pid: int
    ppid: int
    state: str
    start_ticks: int
    """Start time in clock ticks since boot (field 22); stable for the life of the process."""

    @property
    def alive(self) -> bool:
        """False for zombies: they have exited and only wait to be reaped."""
        return self.state not in GONE_STATES

    @property
    def stopped(self) -> bool:
        """Whether the process is stopped by SIGSTOP (state ``T``)."""
        return self.state == STOPPED_STATE

    @property
    def ref(self) -> ProcessRef:
        """The identity of this process."""
        return ProcessRef(self.pid, self.start_ticks)


@dataclass(frozen=True, slots=True)
class ProcessRef:
    """A process identity that survives pid reuse: pid plus start time in ticks since boot."""

    pid: int
    start_ticks: int


def parse_stat(pid: int, text: str) -> ProcStat:
    """Parse one ``/proc/PID/stat`` line; the command name may hold spaces and parentheses."""
    fields = text[text.rfind(")") + 2 :].split()
    return ProcStat(pid=pid, ppid=int(fields[1]), state=fields[0], start_ticks=int(fields[19]))


def read_stat(pid: int, proc_root: Path = Path("/proc")) -> ProcStat | None:
    """Read ``/proc/PID/stat``; ``None`` when the process does not exist."""
    if pid <= 0:
        return None
    try:
        text = (proc_root / str(pid) / "stat").read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError as exc:
        raise ActuationError(f"cannot read /proc stat of pid {pid}: {exc.strerror}") from exc
    try:
        return parse_stat(pid, text)
    except (IndexError, ValueError) as exc:
        raise ActuationError(f"unreadable /proc stat of pid {pid}: {text[:120]!r}") from exc


def snapshot(proc_root: Path = Path("/proc")) -> dict[int, ProcStat]:
    """Every process visible under ``proc_root``, by pid (processes may vanish meanwhile)."""
    processes: dict[int, ProcStat] = {}
    try:
        entries = [entry.name for entry in os.scandir(proc_root)]
    except OSError as exc:
        raise ActuationError(f"cannot list {proc_root}: {exc.strerror}") from exc
    for name in entries:
        if name.isdigit() and (stat := read_stat(int(name), proc_root)):
            processes[stat.pid] = stat
    return processes


def descendants(processes: Mapping[int, ProcStat], roots: Iterable[int]) -> list[ProcStat]:
    """The living descendants of ``roots`` in ``processes``, parents before children."""
    children: dict[int, list[ProcStat]] = {}
    for stat in processes.values():
        children.setdefault(stat.ppid, []).append(stat)
    seen = set(roots)
    queue = list(seen)
    found: list[ProcStat] = []
    while queue:
        for child in children.get(queue.pop(0), ()):
            if child.pid not in seen:
                seen.add(child.pid)
                queue.append(child.pid)
                if child.alive:
                    found.append(child)
    return found


def current(ref: ProcessRef, proc_root: Path = Path("/proc")) -> ProcStat:
    """The living process ``ref`` names; ProcessGone or PidReused otherwise."""
    stat = read_stat(ref.pid, proc_root)
    if stat is None or not stat.alive:
        raise ProcessGone(f"process {ref.pid} has exited")
    if stat.start_ticks != ref.start_ticks:
        raise PidReused(
            f"pid {ref.pid} now belongs to another process "
            f"(started at tick {stat.start_ticks}, expected {ref.start_ticks}); left alone"
        )
    return stat


def tree(root: ProcessRef, proc_root: Path = Path("/proc")) -> list[ProcStat]:
    """The root process and its living descendants, parents first."""
    root_stat = current(root, proc_root)
    return [root_stat, *descendants(snapshot(proc_root), [root.pid])]


def boot_time_s(proc_root: Path = Path("/proc")) -> float:
    """The boot time in seconds since the epoch (``btime`` of ``/proc/stat``)."""
    try:
        for line in (proc_root / "stat").read_text(encoding="utf-8").splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError as exc:
        raise ActuationError(f"cannot read {proc_root / 'stat'}: {exc.strerror}") from exc
    raise ActuationError(f"no btime line in {proc_root / 'stat'}")


def ref_for(pid: int, started_at_s: float, proc_root: Path = Path("/proc")) -> ProcessRef:
    """The identity of ``pid``, checked against the epoch start time a report gave for it.

    ``started_at_s`` of 0 means unknown and accepts the current process. Otherwise a
    process whose start time differs by more than :data:`START_TIME_TOLERANCE_S` is a
    later process that reused the pid: PidReused.
    """
    stat = read_stat(pid, proc_root)
    if stat is None or not stat.alive:
        raise ProcessGone(f"process {pid} has exited")
    if started_at_s > 0:
        started = boot_time_s(proc_root) + stat.start_ticks / CLOCK_TICKS_PER_S
        if abs(started - started_at_s) > START_TIME_TOLERANCE_S:
            raise PidReused(
                f"pid {pid} now belongs to another process (started at {started:.2f}, "
                f"the workload's at {started_at_s:.2f}); left alone"
            )
    return stat.ref


def epoch_start_s(pid: int, proc_root: Path = Path("/proc")) -> float:
    """The start time of ``pid`` in seconds since the epoch (what reports carry)."""
    stat = read_stat(pid, proc_root)
    if stat is None:
        raise ProcessGone(f"process {pid} has exited")
    return boot_time_s(proc_root) + stat.start_ticks / CLOCK_TICKS_PER_S


class SignalGuard:
    """Refuses pids no action may touch: 0 and below, 1, the agent and its ancestors."""

    def __init__(self, *, agent_pid: int | None = None, proc_root: Path = Path("/proc")) -> None:
        self.agent_pid = os.getpid() if agent_pid is None else agent_pid
        self.proc_root = proc_root

    def protected(self) -> frozenset[int]:
        """The protected pids, with the agent's ancestry read afresh (parents can change)."""
        pids = {0, 1, self.agent_pid}
        pid = self.agent_pid
        while (stat := read_stat(pid, self.proc_root)) is not None and stat.ppid not in pids:
            pids.add(stat.ppid)
            pid = stat.ppid
        return frozenset(pids)

    def check(self, pids: int | Iterable[int]) -> None:
        """Raise ProtectedProcess if any of ``pids`` is protected."""
        wanted = [pids] if isinstance(pids, int) else list(pids)
        protected = self.protected()
        for pid in wanted:
            if pid <= 1 or pid in protected:
                raise ProtectedProcess(f"refusing to signal pid {pid}: {self._why(pid)}")

    def _why(self, pid: int) -> str:
        if pid <= 0:
            return "not a single process"
        if pid == 1:
            return "it is init"
        if pid == self.agent_pid:
            return "it is the agent itself"
        return "it is an ancestor of the agent"
