"""The daemon's own CPU, memory and file descriptors, under the names every Prometheus client
library gives them (``process_cpu_seconds_total``, ``process_resident_memory_bytes``...), read
from ``/proc/self`` at each scrape. Nothing is shown where ``/proc`` is missing."""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator, Mapping
from pathlib import Path

from backstop.telemetry.series import family_lines

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def process_lines(labels: Mapping[str, str], proc: Path = Path("/proc")) -> Iterator[str]:
    """The lines of the six series, ``labels`` on each (none without ``/proc``)."""
    try:
        stat = (proc / "self" / "stat").read_text().rsplit(")", 1)[1].split()
        boot = next(
            float(line.split()[1])
            for line in (proc / "stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        fds = len(os.listdir(proc / "self" / "fd"))
    except (OSError, IndexError, StopIteration, ValueError):
        return
    # Fields after the command: utime and stime are the 12th and 13th, starttime the 20th,
    # vsize and rss the 21st and 22nd (proc(5), counting from state as the 1st).
    cpu = (int(stat[11]) + int(stat[12])) / _TICKS
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    series = (
        ("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", cpu),
        ("process_virtual_memory_bytes", "Virtual memory size in bytes.", int(stat[20])),
        ("process_resident_memory_bytes", "Resident memory size in bytes.", int(stat[21]) * _PAGE),
        (
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            boot + int(stat[19]) / _TICKS,
        ),
        ("process_open_fds", "Number of open file descriptors.", fds),
        ("process_max_fds", "Maximum number of open file descriptors.", soft),
    )
    for name, text, value in series:
        kind = "counter" if name.endswith("_total") else "gauge"
        yield from family_lines(name, kind, text, [(name, (), value)], labels)
