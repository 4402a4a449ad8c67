"""Real workload processes for tests: a python root that can fork, listen, count and resist.

``start_workload(...)`` runs this file as a child program. The root optionally joins a
cgroup before doing anything else, forks N children (which may fork grandchildren
periodically), listens on a loopback port and answers ``ping`` with ``pong PID COUNT``,
and writes an increasing counter to a file so tests can see whether it makes progress.
It reports its pid, port and children on stdout when ready.

Cleanup is reliable: each workload runs in its own session, and :meth:`WorkloadProcess.kill`
SIGKILLs every process of that session and of the root's tree (stopped and frozen ones
too), then waits for them to be gone. Every process also exits on its own after
``lifetime_s`` of running time, a last guard against leaks.

Only the standard library and psutil are used, so the lead's end-to-end tests can share it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    from backstop.core.models import Workload

GONE_STATES = frozenset("ZXx")


# --- reading /proc independently of the code under test ------------------------------------


def proc_stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat from the state on (index 0 = state), or None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rfind(")") + 2 :].split()


def proc_state(pid: int) -> str | None:
    """The one-letter state of ``pid`` (R, S, T, Z...), or None when it does not exist."""
    fields = proc_stat_fields(pid)
    return fields[0] if fields else None


def is_gone(pid: int) -> bool:
    """Whether ``pid`` has exited (does not exist, or is a zombie)."""
    state = proc_state(pid)
    return state is None or state in GONE_STATES


def all_gone(pids: Iterable[int]) -> bool:
    """Whether every one of ``pids`` has exited."""
    return all(is_gone(pid) for pid in pids)


def wait_until(
    predicate: Callable[[], bool], timeout_s: float = 10.0, interval_s: float = 0.01
) -> bool:
    """Poll ``predicate`` until it holds or ``timeout_s`` passes; return its last value."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            return predicate()
        time.sleep(interval_s)
    return True


@dataclass(frozen=True)
class WorkloadConfig:
    """What the workload program does; passed to it as JSON."""

    children: int = 0
    listen: bool = False
    ignore_sigterm: bool = False
    counter_path: str | None = None
    fork_every_s: float | None = None
    max_forks: int = 20
    cgroup_procs: str | None = None
    escape_on_sigterm: bool = False
    escape_delay_s: float = 0.0
    graceful_sigterm: bool = False
    lifetime_s: float = 300.0


# --- the parent side -------------------------------------------------------------------------


@dataclass
class WorkloadProcess:
    """A running workload started by :func:`start_workload`."""

    popen: subprocess.Popen[bytes]
    pid: int
    port: int | None
    child_pids: tuple[int, ...]
    counter_path: Path | None
    stderr_path: Path
    _known: dict[int, float] = field(default_factory=dict)
    """Every pid seen in the tree, with its create time, so cleanup can find orphans."""

    def tree_pids(self) -> list[int]:
        """The root and its living descendants now (root first)."""
        try:
            root = psutil.Process(self.pid)
            pids = [self.pid, *(c.pid for c in root.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []
        alive = [pid for pid in pids if not is_gone(pid)]
        self._remember(alive)
        return alive

    def ping(self, timeout_s: float = 5.0) -> str:
        """Send ``ping`` to the workload's port and return its answer line."""
        if self.port is None:
            raise RuntimeError("workload was started without listen=True")
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout_s) as conn:
            conn.sendall(b"ping\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(256)
                if not chunk:
                    break
                data += chunk
        return data.decode().strip()

    def counter(self) -> int:
        """The last value the root wrote to its counter file."""
        if self.counter_path is None:
            raise RuntimeError("workload was started without a counter")
        text = self.counter_path.read_text().strip()
        return int(text) if text else 0

    def stderr(self) -> str:
        """What the workload wrote to stderr (for assertion messages)."""
        try:
            return self.stderr_path.read_text()
        except FileNotFoundError:
            return ""

    def _remember(self, pids: list[int]) -> None:
        for pid in pids:
            with contextlib.suppress(psutil.NoSuchProcess):
                self._known.setdefault(pid, psutil.Process(pid).create_time())

    def session_pids(self) -> list[int]:
        """Living processes of the workload's session (sid = root pid), orphans included."""
        members = []
        for entry in os.listdir("/proc"):
            fields = proc_stat_fields(int(entry)) if entry.isdigit() else None
            # fields: 0 state, 1 ppid, 2 pgrp, 3 session
            if fields and int(fields[3]) == self.pid and fields[0] not in GONE_STATES:
                members.append(int(entry))
        return members

    def _ours(self) -> list[int]:
        pids = set(self.tree_pids()) | set(self.session_pids())
        for pid, created in self._known.items():
            with contextlib.suppress(psutil.NoSuchProcess):
                if psutil.Process(pid).create_time() == created:
                    pids.add(pid)
        return sorted(pid for pid in pids if not is_gone(pid))

    def kill(self, timeout_s: float = 10.0) -> None:
        """SIGKILL every process of the workload and wait until all are gone (idempotent)."""
        for _ in range(5):
            pids = self._ours()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            wait_until(functools.partial(all_gone, pids), timeout_s / 5)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=timeout_s)
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        leftover = self._ours()
        if leftover:
            raise RuntimeError(f"workload {self.pid}: pids {leftover} survived cleanup")

    def as_workload(self, workload_id: str = "wl-test", node_id: str = "node-test") -> Workload:
        """The Workload a sampler would report for this process tree now."""
        from backstop.core.models import Fingerprint, Workload

        return Workload(
            workload_id=workload_id,
            node_id=node_id,
            root_pid=self.pid,
            pids=tuple(self.tree_pids()),
            fingerprint=Fingerprint(),
            started_at_s=psutil.Process(self.pid).create_time(),
        )

    def __enter__(self) -> WorkloadProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def start_workload(
    work_dir: Path,
    *,
    children: int = 0,
    listen: bool = False,
    ignore_sigterm: bool = False,
    counter: bool = False,
    fork_every_s: float | None = None,
    max_forks: int = 20,
    cgroup_dir: Path | None = None,
    escape_on_sigterm: bool = False,
    escape_delay_s: float = 0.0,
    graceful_sigterm: bool = False,
    lifetime_s: float = 300.0,
    ready_timeout_s: float = 20.0,
) -> WorkloadProcess:
    """Start a workload root as a child of this process and wait until it is ready.

    ``children``: processes the root forks (they sleep, or fork a grandchild every
    ``fork_every_s`` up to ``max_forks``). ``listen``: answer on a loopback port.
    ``ignore_sigterm``: root and children ignore SIGTERM. ``counter``: the root writes
    an increasing counter to a file in ``work_dir`` every few milliseconds.
    ``cgroup_dir``: the root moves itself into this cgroup before forking.
    ``escape_on_sigterm``: on SIGTERM each child forks a grandchild that ignores SIGTERM,
    waits ``escape_delay_s`` and exits, so the grandchild leaves the tree (a daemon
    escaping its parent). ``graceful_sigterm``: root and children handle SIGTERM with a
    handler that exits with status 0, as a server shutting down cleanly does (a handler,
    unlike the default action, cannot run while the process is frozen or stopped).
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    tag = f"{time.monotonic_ns()}"
    counter_path = work_dir / f"counter-{tag}" if counter else None
    stderr_path = work_dir / f"stderr-{tag}"
    config = WorkloadConfig(
        children=children,
        listen=listen,
        ignore_sigterm=ignore_sigterm,
        counter_path=str(counter_path) if counter_path else None,
        fork_every_s=fork_every_s,
        max_forks=max_forks,
        cgroup_procs=str(cgroup_dir / "cgroup.procs") if cgroup_dir else None,
        escape_on_sigterm=escape_on_sigterm,
        escape_delay_s=escape_delay_s,
        graceful_sigterm=graceful_sigterm,
        lifetime_s=lifetime_s,
    )
    with stderr_path.open("wb") as stderr:
        popen = subprocess.Popen(
            [sys.executable, __file__, json.dumps(dataclasses.asdict(config))],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )
    workload = WorkloadProcess(popen, popen.pid, None, (), counter_path, stderr_path)
    try:
        ready = _read_ready(popen, ready_timeout_s)
    except BaseException:
        workload.kill()
        raise
    workload.port = ready.port
    workload.child_pids = ready.children
    workload.tree_pids()
    if counter_path is not None:
        wait_until(counter_path.exists, ready_timeout_s)
    return workload


@dataclass(frozen=True)
class _Ready:
    port: int | None
    children: tuple[int, ...]


def _read_ready(popen: subprocess.Popen[bytes], timeout_s: float) -> _Ready:
    assert popen.stdout is not None
    fd = popen.stdout.fileno()
    line = b""
    deadline = time.monotonic() + timeout_s
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        readable, _, _ = select.select([fd], [], [], max(0.0, remaining))
        if not readable:
            raise TimeoutError(f"workload {popen.pid} not ready within {timeout_s} s")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise RuntimeError(f"workload {popen.pid} exited before it was ready")
        line += chunk
    ready = json.loads(line)
    return _Ready(port=ready["port"], children=tuple(ready["children"]))


class WorkloadFactory:
    """Starts workloads for one test and kills them all at :meth:`close` (use in a fixture)."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.started: list[WorkloadProcess] = []

    def start(self, **options: Any) -> WorkloadProcess:
        """:func:`start_workload` with this factory's directory; killed at close."""
        workload = start_workload(self.work_dir, **options)
        self.started.append(workload)
        return workload

    def close(self) -> None:
        """Kill every workload started here; raise if any process survived."""
        errors = []
        for workload in reversed(self.started):
            try:
                workload.kill()
            except RuntimeError as exc:
                errors.append(str(exc))
        if errors:
            raise RuntimeError("; ".join(errors))


# --- the child side (this file run as a program) ----------------------------------------------


def _escape(born: float, config: WorkloadConfig) -> None:
    """SIGTERM handler of a child: leave a SIGTERM-ignoring orphan behind and exit."""
    if os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _sleep_until(born + config.lifetime_s)
        os._exit(0)
    time.sleep(config.escape_delay_s)
    os._exit(0)


def _graceful_exit(*_: object) -> None:
    os._exit(0)


def _child_main(config: WorkloadConfig, born: float) -> None:
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    if config.escape_on_sigterm:
        signal.signal(signal.SIGTERM, lambda *_: _escape(born, config))
    forks = 0
    while time.monotonic() - born < config.lifetime_s:
        if config.fork_every_s is not None and forks < config.max_forks:
            time.sleep(config.fork_every_s)
            forks += 1
            if os.fork() == 0:
                _sleep_until(born + config.lifetime_s)
                os._exit(0)
        else:
            time.sleep(0.05)
    os._exit(0)


def _sleep_until(deadline: float) -> None:
    while time.monotonic() < deadline:
        time.sleep(0.05)


def _answer(server: socket.socket, count: int) -> None:
    conn, _ = server.accept()
    with conn:
        conn.settimeout(2.0)
        with contextlib.suppress(OSError):
            data = b""
            while not data.endswith(b"\n") and len(data) < 1024:
                chunk = conn.recv(256)
                if not chunk:
                    break
                data += chunk
            conn.sendall(f"pong {os.getpid()} {count}\n".encode())


def _write_counter(path: str, count: int) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as handle:
        handle.write(str(count))
    os.replace(tmp, path)


def _root_main(config: WorkloadConfig) -> None:
    born = time.monotonic()
    if config.cgroup_procs:
        with open(config.cgroup_procs, "w") as handle:
            handle.write("0")
    if config.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    elif config.graceful_sigterm:
        signal.signal(signal.SIGTERM, _graceful_exit)
    server = None
    if config.listen:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.bind(("127.0.0.1", 0))
        server.listen(16)
    children = []
    for _ in range(config.children):
        pid = os.fork()
        if pid == 0:
            if server is not None:
                server.close()
            _child_main(config, born)
        children.append(pid)
    port = server.getsockname()[1] if server is not None else None
    sys.stdout.write(json.dumps({"pid": os.getpid(), "port": port, "children": children}) + "\n")
    sys.stdout.flush()
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    count = 0
    while time.monotonic() - born < config.lifetime_s:
        if server is None:
            time.sleep(0.005)
        elif select.select([server], [], [], 0.005)[0]:
            _answer(server, count)
        count += 1
        if config.counter_path:
            _write_counter(config.counter_path, count)


if __name__ == "__main__":
    _root_main(WorkloadConfig(**json.loads(sys.argv[1])))
