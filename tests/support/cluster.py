"""A local Backstop installation for end-to-end tests: real processes, real CLI.

``LocalCluster`` starts a controller and agents as child processes (each in its own session so
teardown can kill whole trees), model servers as workloads, and runs ``backstop`` commands the
way an operator would, returning exit code, stdout and stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from backstop.demo import model_server
from backstop.demo.processes import stop_process_groups

T = TypeVar("T")


class ProcessExited(AssertionError):
    """A daemon the test waits on is gone; waiting longer cannot help."""


def wait_for(probe: Callable[[], T | None], timeout_s: float = 15.0, what: str = "") -> T:
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except ProcessExited:
            raise
        except Exception as exc:
            last_error = exc
            value = None
        if value is not None and value is not False:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what or probe}: {last_error}")


def proc_state(pid: int) -> str:
    """The one-letter state in /proc/PID/stat ("" when the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return text.rsplit(")", 1)[1].split()[0]


def tree(pid: int) -> list[int]:
    pids = [pid]
    for child in _children(pid):
        pids += tree(child)
    return pids


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            found += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
    return found


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class ModelServer:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def pid(self) -> int:
        return self.proc.pid

    def ask(self, prompt: str = "hi", timeout_s: float = 2.0) -> str | None:
        query = urllib.parse.urlencode({"prompt": prompt})
        url = f"http://127.0.0.1:{self.port}/generate?{query}"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp:
                return str(json.loads(resp.read())["completion"])
        except OSError:
            return None


@dataclass
class LocalCluster:
    workdir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    address: str = ""
    enrol_address: str = ""
    insecure: bool = True
    """Open mode (plaintext loopback); secure tests set False and pass TLS flags."""
    tls_env: dict[str, str] = field(default_factory=dict)
    agents: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    controller: subprocess.Popen[bytes] | None = None
    controllers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    store_url: str = ""
    """Where controllers keep their state (default: one SQLite file in the workdir)."""

    def spawn(
        self, name: str, args: list[str], env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        full_env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env=full_env, start_new_session=True
        )
        self.procs.append(proc)
        return proc

    def start_controller(
        self, listen: str = "127.0.0.1:0", *extra: str, name: str = "controller"
    ) -> str:
        """Start a controller (replica) called ``name``; the CLI and agents use the one called
        "controller" unless told otherwise."""
        ready = self.workdir / f"{name}.addr"
        ready.unlink(missing_ok=True)
        proc = self.spawn(
            name,
            [
                sys.executable,
                "-m",
                "backstop",
                "--log-format",
                "json",
                *(["--insecure"] if self.insecure else []),
                "controller",
                "serve",
                "--listen",
                listen,
                "--store",
                self.store_url or f"sqlite:///{self.workdir / 'backstop.db'}",
                "--report-interval",
                "0.5",
                "--ready-file",
                str(ready),
                *extra,
            ],
        )
        self.controllers[name] = proc
        lines = self.wait_while_running(
            name, lambda: ready.read_text().split() if ready.exists() else None, 30
        )
        if name == "controller":
            self.controller = proc
            self.address = lines[0]
            self.enrol_address = lines[1] if len(lines) > 1 else ""
        return str(lines[0])

    def wait_while_running(self, name: str, probe: Callable[[], T | None], timeout_s: float) -> T:
        """``probe`` until it answers; fails at once, with the log's tail, if ``name`` exits."""
        proc = self.controllers.get(name) or self.agents[name.removeprefix("agent-")]

        def answer() -> T | None:
            if proc.poll() is not None:
                raise ProcessExited(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")
            return probe()

        try:
            return wait_for(answer, timeout_s, name)
        except ProcessExited:
            raise
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- {name}.log ---\n{self.log_tail(name)}") from exc

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.workdir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def logged(self, name: str, msg: str, timeout_s: float = 20) -> dict[str, Any]:
        """The first JSON log entry of ``name`` whose message is ``msg``, once it is written."""

        def entry() -> dict[str, Any] | None:
            path = self.workdir / f"{name}.log"
            for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
                if line.startswith("{"):
                    record = json.loads(line)
                    if record.get("msg") == msg:
                        return dict(record)
            return None

        return self.wait_while_running(name, entry, timeout_s)

    def kill_controller(self, name: str = "controller") -> None:
        proc = self.controllers[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def signal_controller(self, name: str, signum: int) -> None:
        os.killpg(self.controllers[name].pid, signum)

    def _spawn_backstop(
        self,
        name: str,
        controller: str,
        args: list[str],
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """``backstop ARGS`` as a daemon joined to ``controller`` (default: "controller")."""
        proc = self.spawn(
            name,
            [
                sys.executable,
                "-m",
                "backstop",
                "--log-format",
                "json",
                "--controller",
                controller or self.address,
                *(["--insecure"] if self.insecure else []),
                *args,
            ],
            env,
        )
        self.agents[name.removeprefix("agent-")] = proc
        return proc

    def start_agent(
        self,
        node_id: str,
        env: Mapping[str, str] | None = None,
        *extra: str,
        controller: str = "",
    ) -> subprocess.Popen[bytes]:
        state = str(self.workdir / f"state-{node_id}")
        args = ["agent", "run", "--node-id", node_id, "--state-dir", state]
        return self._spawn_backstop(
            f"agent-{node_id}", controller, [*args, "--report-interval", "0.5", *extra], env
        )

    def start_cloud_agent(
        self, provider: str, endpoint_url: str, *extra: str, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """``backstop cloud run`` for one account, its API at ``endpoint_url``."""
        state = str(self.workdir / f"state-cloud-{provider}")
        args = ["cloud", "run", "--provider", provider, "--endpoint-url", endpoint_url]
        return self._spawn_backstop(
            f"cloud-{provider}",
            "",
            [*args, "--state-dir", state, "--report-interval", "0.5", *extra],
            env,
        )

    def start_model_server(self, name: str) -> ModelServer:
        port_file = self.workdir / f"{name}.port"
        proc = self.spawn(name, model_server.command(self.workdir / name, port_file))
        port = wait_for(
            lambda: int(port_file.read_text()) if port_file.exists() else None, 20, name
        )
        server = ModelServer(proc, port)
        wait_for(lambda: server.ask("warm up") is not None, 10, f"{name} to answer")
        return server

    def cli(
        self, *args: str, timeout_s: float = 60.0, env: Mapping[str, str] | None = None
    ) -> CliResult:
        env = {
            **os.environ,
            "BACKSTOP_CONTROLLER": self.address,
            "BACKSTOP_USER": "e2e",
            "BACKSTOP_INSECURE": "1" if self.insecure else "0",
            **self.tls_env,
            **(env or {}),
        }
        result = subprocess.run(
            [sys.executable, "-m", "backstop", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout_s,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        return CliResult(result.returncode, result.stdout, result.stderr)

    def json(self, *args: str) -> Any:
        result = self.cli(*args, "-o", "json")
        assert result.code == 0, result.err
        return result.json()

    def workloads_by_pid(self) -> dict[int, dict[str, Any]]:
        return {w["root_pid"]: w for w in self.json("workloads")}

    def wait_for_workload(self, pid: int, timeout_s: float = 20.0) -> dict[str, Any]:
        return wait_for(lambda: self.workloads_by_pid().get(pid), timeout_s, f"workload {pid}")

    def stop(self) -> None:
        stop_process_groups(self.procs)

    def logs(self) -> str:
        parts = []
        for log in sorted(self.workdir.glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-25:]
            parts.append(f"--- {log.name}\n" + "\n".join(lines))
        return "\n".join(parts)


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path)
    try:
        yield local
    finally:
        local.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(local.logs())
