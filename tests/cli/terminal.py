"""The real CLI as a person runs it: on a terminal (a pty), answering its prompt."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass
class Session:
    code: int
    transcript: bytes
    """Everything the CLI wrote to the terminal, raw (our typed answer is echoed in it)."""

    @property
    def text(self) -> str:
        return self.transcript.decode("utf-8", "replace").replace("\r\n", "\n")


def run_on_terminal(
    *args: str,
    env: Mapping[str, str],
    answer: str | None,
    prompt: bytes = b"[y/N] ",
    timeout_s: float = 60.0,
    columns: int = 0,
) -> Session:
    """``backstop ARGS`` with stdin, stdout and stderr on a pty (``columns`` wide, when given);
    types ``answer`` when the prompt shows (``None``: expect no prompt)."""
    leader, follower = pty.openpty()
    if columns:
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "backstop", *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=dict(env),
        start_new_session=True,
    )
    os.close(follower)
    out = bytearray()
    answered = answer is None
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # EIO: the CLI closed the terminal
                    chunk = b""
                if not chunk:
                    break
                out += chunk
            if not answered and out.endswith(prompt):
                os.write(leader, (answer or "").encode() + b"\n")
                answered = True
            if not ready and proc.poll() is not None:
                break
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    assert answered, f"the prompt never came: {bytes(out)!r}"
    return Session(code, bytes(out))
