"""Scratch cgroups for tests: a fresh directory in the cgroup2 hierarchy, emptied and removed after.

The cgroup2 mount is read from ``/proc/self/mountinfo`` independently of the code under
test. :func:`scratch_cgroup` creates ``backstop-test-<random>`` right under the mount;
at exit it thaws it, kills every process in it and its children (``cgroup.kill`` where
the kernel has it, SIGKILL per pid otherwise), waits until it is empty and removes
the directories bottom-up, even when the test failed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path


def cgroup2_mount(mountinfo: Path = Path("/proc/self/mountinfo")) -> Path | None:
    """The mount point of the cgroup2 hierarchy, or None when none is mounted."""
    for line in mountinfo.read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[:1] == ["cgroup2"] and left.split()[3] == "/":
            return Path(left.split()[4].replace("\\040", " "))
    return None


def cgroup_procs(directory: Path) -> set[int]:
    """Pids in ``directory`` and every child cgroup."""
    pids: set[int] = set()
    for current, _, _ in os.walk(directory):
        with contextlib.suppress(FileNotFoundError):
            pids.update(int(p) for p in (Path(current) / "cgroup.procs").read_text().split())
    return pids


def _write(path: Path, value: str) -> None:
    with contextlib.suppress(OSError), path.open("w") as handle:
        handle.write(value)


def empty_cgroup(directory: Path, timeout_s: float = 10.0) -> None:
    """Kill everything in ``directory`` (thawing it first) and wait until it is empty."""
    deadline = time.monotonic() + timeout_s
    for current, _, _ in os.walk(directory):
        _write(Path(current) / "cgroup.freeze", "0")
    while pids := cgroup_procs(directory):
        if (directory / "cgroup.kill").exists():
            _write(directory / "cgroup.kill", "1")
        else:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if time.monotonic() >= deadline:
            raise RuntimeError(f"cgroup {directory} still holds pids {sorted(pids)}")
        time.sleep(0.01)


def remove_cgroup(directory: Path, timeout_s: float = 10.0) -> None:
    """Empty ``directory`` and remove it with its child cgroups."""
    if not directory.exists():
        return
    empty_cgroup(directory, timeout_s)
    for current, _, _ in sorted(os.walk(directory), key=lambda w: -len(Path(w[0]).parts)):
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                os.rmdir(current)
                break
            except FileNotFoundError:
                break
            except OSError:  # EBUSY while the last task finishes exiting
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)


@contextlib.contextmanager
def scratch_cgroup(prefix: str = "backstop-test") -> Iterator[Path]:
    """A new cgroup directory under the cgroup2 mount, removed with its processes after."""
    mount = cgroup2_mount()
    if mount is None:
        raise RuntimeError("no cgroup2 hierarchy is mounted on this host")
    directory = mount / f"{prefix}-{secrets.token_hex(4)}"
    directory.mkdir()
    try:
        yield directory
    finally:
        remove_cgroup(directory)
