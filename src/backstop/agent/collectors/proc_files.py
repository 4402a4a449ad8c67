"""Reading one process's files under ``/proc`` (or another procfs root).

Plain ``open``/``read`` system calls rather than Python file objects: the process collector
runs these for every process it reads. A process that exits while it is read raises
:class:`Vanished`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from backstop.agent.collectors.cgroup_file import parse_cgroup_file
from backstop.core.errors import CollectorError

_READ_BYTES = 65536


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of ``/proc/PID/stat`` the collector uses."""

    comm: str
    state: str
    ppid: int
    flags: int
    start_ticks: int
    exec_mark: int
    """``arg_start``: where the command line lies; a new one at every ``exec``."""


class Vanished(Exception):
    """The process exited while it was being read."""


class ProcFiles:
    """The files of the processes under one procfs root."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._prefix = f"{root}/"
        self._clk_tck = os.sysconf("SC_CLK_TCK")
        self._boot_time: float | None = None

    def listing(self) -> dict[int, int]:
        try:
            with os.scandir(self._root) as entries:
                return {int(e.name): e.inode() for e in entries if e.name.isdigit()}
        except OSError as exc:
            raise CollectorError(f"cannot list {self._root}: {exc}") from exc

    def path(self, pid: int, name: str) -> str:
        return f"{self._prefix}{pid}/{name}"

    def read_bytes(self, pid: int, name: str) -> bytes:
        """The whole of ``/proc/PID/name`` (plain syscalls: this runs for every process)."""
        fd = os.open(self.path(pid, name), os.O_RDONLY | os.O_CLOEXEC)
        try:
            parts = []
            while block := os.read(fd, _READ_BYTES):
                parts.append(block)
            return b"".join(parts)
        finally:
            os.close(fd)

    def stat(self, pid: int) -> ProcStat:
        try:
            data = self.read_bytes(pid, "stat")
            left, right = data.index(b"("), data.rindex(b")")
            fields = data[right + 2 :].split()
            return ProcStat(
                comm=data[left + 1 : right].decode("utf-8", "replace"),
                state=fields[0].decode("ascii", "replace"),
                ppid=int(fields[1]),
                flags=int(fields[6]),
                start_ticks=int(fields[19]),
                exec_mark=int(fields[45]) if len(fields) > 45 else 0,
            )
        except (OSError, ValueError, IndexError) as exc:
            raise Vanished from exc

    def cmdline(self, pid: int) -> tuple[str, ...]:
        try:
            data = self.read_bytes(pid, "cmdline")
        except OSError as exc:
            raise Vanished from exc
        if not data:
            return ()
        if data.endswith(b"\0"):
            parts = data[:-1].split(b"\0")
        else:
            # setproctitle-style: the process rewrote its argv as one space-separated string.
            parts = data.replace(b"\0", b" ").split()
        return tuple(part.decode("utf-8", "replace") for part in parts)

    def exe(self, pid: int) -> str:
        try:
            target = os.readlink(self.path(pid, "exe"))
        except OSError:
            return ""
        return target.removesuffix(" (deleted)")

    def uid(self, pid: int) -> int:
        try:
            status = self.read_bytes(pid, "status")
            start = status.index(b"\nUid:") + 5
            return int(status[start : status.index(b"\n", start)].split()[0])
        except (OSError, ValueError, IndexError) as exc:
            raise Vanished from exc

    def cgroup(self, pid: int) -> tuple[str, str]:
        try:
            text = self.read_bytes(pid, "cgroup").decode("utf-8", "replace")
        except OSError as exc:
            raise Vanished from exc
        return parse_cgroup_file(text)

    def boot_time(self) -> float:
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

    def start_time(self, start_ticks: int) -> float:
        """Seconds since the epoch of a start in clock ticks since boot, as psutil has it."""
        return start_ticks / self._clk_tck + self.boot_time()
