"""Real Backstop daemons for the benchmarks: a controller and an agent as child processes.

Both run in open mode on loopback, each in its own process group (so a benchmark can stop the
whole tree), with warnings and errors logged to ``WORKDIR/controller.log`` / ``agent.log``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

START_TIMEOUT_S = 30.0
BACKSTOP = [sys.executable, "-m", "backstop", "--insecure", "--log-level", "warning"]


class DaemonDidNotStart(RuntimeError):
    """The controller exited or did not say where it listens in time."""


def start_controller(
    workdir: Path, *extra: str, store: str = ""
) -> tuple[subprocess.Popen[bytes], str]:
    """A controller on a free loopback port (``store``: default a SQLite file in ``workdir``)
    with ``extra`` flags for ``controller serve``; returns it and its address once it listens."""
    ready = workdir / "addr"
    log = workdir / "controller.log"
    proc = subprocess.Popen(
        [
            *BACKSTOP, "controller", "serve", "--listen", "127.0.0.1:0",
            "--store", store or f"sqlite:///{workdir / 'db.sqlite'}",
            "--ready-file", str(ready), *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(log, "wb"),  # noqa: SIM115 - owned by the child
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            proc.wait()
            raise DaemonDidNotStart(f"the controller did not start; see {log}")
        time.sleep(0.1)
    return proc, ready.read_text().split()[0]


def start_agent(
    workdir: Path, address: str, node_id: str, env: Mapping[str, str], *extra: str
) -> subprocess.Popen[bytes]:
    """An agent for ``node_id`` reporting to ``address``, its state in ``WORKDIR/state``."""
    return subprocess.Popen(
        [
            *BACKSTOP, "--controller", address, "agent", "run", "--node-id", node_id,
            "--state-dir", str(workdir / "state"), *extra,
        ],
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "agent.log", "wb"),
        start_new_session=True,
    )  # fmt: skip
