"""Real child processes for the fingerprint, discovery and process collector tests.

Each child runs a small Python (or shell) program in its own session, reports readiness as
one line on stdout, and waits for instructions on stdin. :class:`Spawner` kills every
process of every session it started (children, grandchildren, re-parented orphans) and
reaps them, whatever the test's outcome.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

READY_TIMEOUT_S = 20.0


@dataclass
class Child:
    """A started child program."""

    popen: subprocess.Popen[str]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def read_line(self, timeout_s: float = READY_TIMEOUT_S) -> str:
        """The next stdout line; fails the test when none comes in time."""
        assert self.popen.stdout is not None
        ready, _, _ = select.select([self.popen.stdout], [], [], timeout_s)
        if not ready:
            raise AssertionError(f"child {self.pid} printed nothing in {timeout_s}s")
        line = self.popen.stdout.readline()
        if not line:
            stderr = self.popen.stderr.read() if self.popen.stderr else ""
            raise AssertionError(f"child {self.pid} exited: {stderr}")
        return line.strip()

    def send(self, line: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()


class Spawner:
    """Starts children and cleans all of them up."""

    def __init__(self) -> None:
        self._children: list[Child] = []

    def python(self, script: str, *args: str) -> Child:
        """Run ``script`` with this interpreter; ``sys.argv[1:]`` are ``args``."""
        return self.command([sys.executable, "-c", script, *args])

    def command(self, argv: Sequence[str]) -> Child:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        child = Child(popen)
        self._children.append(child)
        return child

    def cleanup(self) -> None:
        for child in self._children:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
        for child in self._children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.popen.wait(timeout=10)
            for stream in (child.popen.stdin, child.popen.stdout, child.popen.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        deadline = time.monotonic() + 10
        for child in self._children:
            while _group_alive(child.pid) and time.monotonic() < deadline:
                time.sleep(0.02)


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group is still running (zombies wait for init: dead)."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                text = f.read()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False
