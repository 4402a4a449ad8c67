"""The narrated demo: controller, agent and a model server, corrected with the real CLI."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from backstop.core.errors import BackstopError, Unavailable
from backstop.demo import model_server, simgpu
from backstop.demo.processes import stop_process_groups

STEPS = 9


class Demo:
    def __init__(self, workdir: Path, pace_s: float) -> None:
        self.workdir = workdir
        self.pace_s = pace_s
        self.procs: list[subprocess.Popen[bytes]] = []
        # Open mode: plaintext on loopback, unsigned corrections; the demo's whole world is
        # this machine. A real deployment uses mutual TLS and signed corrections.
        self.env = dict(os.environ, BACKSTOP_INSECURE="1")
        self.step_no = 0
        self.model_port = 0
        self.model_pid = 0

    # --- narration -----------------------------------------------------------------------

    def step(self, title: str) -> None:
        self.step_no += 1
        print(f"\n==> [{self.step_no}/{STEPS}] {title}", flush=True)
        time.sleep(self.pace_s * 0.3)

    def say(self, text: str) -> None:
        print(f"    {text}", flush=True)

    def backstop(self, *args: str, show: bool = True, check: bool = True) -> str:
        """Run the real CLI, show the command and its output."""
        cmd = [sys.executable, "-m", "backstop", *args]
        if show:
            print(f"    $ backstop {shlex.join(args)}", flush=True)
        result = subprocess.run(
            cmd, env=self.env, capture_output=True, text=True, timeout=120, check=False
        )
        out = (result.stdout + result.stderr).rstrip()
        if show and out:
            print("\n".join("      " + line for line in out.splitlines()), flush=True)
        if check and result.returncode != 0:
            raise BackstopError(f"`backstop {shlex.join(args)}` exited {result.returncode}")
        time.sleep(self.pace_s * 0.5)
        return result.stdout

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - owned by the process
        proc = subprocess.Popen(
            args, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs.append(proc)
        return proc

    # --- the model server ----------------------------------------------------------------

    def ask(self, prompt: str, timeout_s: float = 2.0) -> str:
        query = urllib.parse.urlencode({"prompt": prompt})
        url = f"http://127.0.0.1:{self.model_port}/generate?{query}"
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp:
                body = json.loads(resp.read())
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return f"no answer within {timeout_s:g} s ({type(reason).__name__})"
        return (
            f"answered in {1000 * (time.perf_counter() - started):.0f} ms: {body['completion']!r}"
        )

    def proc_states(self) -> str:
        states = []
        for pid in [self.model_pid, *_children(self.model_pid)]:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
                states.append(f"pid {pid}: {stat.rsplit(')', 1)[1].split()[0]}")
            except OSError:
                states.append(f"pid {pid}: gone")
        return ", ".join(states)

    # --- run -----------------------------------------------------------------------------

    def run(self) -> int:
        model, model_hash, gpu_env = self._start()
        self._correct(model, model_hash, gpu_env)
        self.step("The record")
        self.backstop("corrections")
        self.say(f"logs and the database are in {self.workdir} until the demo exits")
        return 0

    def _start(self) -> tuple[subprocess.Popen[bytes], str, dict[str, str]]:
        self.step("Start the controller on embedded SQLite")
        ready = self.workdir / "controller.addr"
        db = self.workdir / "backstop.db"
        self.say(
            f"$ backstop --insecure controller serve --listen 127.0.0.1:0 --store sqlite:///{db}"
        )
        self.say("(open mode: plaintext on loopback; see docs/security.md for mutual TLS)")
        self.spawn(
            "controller",
            [
                sys.executable,
                "-m",
                "backstop",
                "controller",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--store",
                f"sqlite:///{db}",
                "--report-interval",
                "1",
                "--ready-file",
                str(ready),
            ],
        )
        address = _wait_for(lambda: _read(ready), 20, "the controller to start").split()[0]
        self.env["BACKSTOP_CONTROLLER"] = address
        self.say(f"controller listening on {address}")

        self.step("Start a small model server (a real process that maps safetensors weights)")
        model_ready = self.workdir / "model.port"
        model = self.spawn(
            "model-server", model_server.command(self.workdir / "model", model_ready)
        )
        self.model_port = int(_wait_for(lambda: _read(model_ready), 20, "the model server"))
        self.model_pid = model.pid
        self.say(f"model server pid {model.pid} on 127.0.0.1:{self.model_port}")
        self.say(f"request: {self.ask('hello')}")

        self.step("Start the node agent")
        gpu_env = simgpu.prepare(self.workdir, gpu_pids=[model.pid])
        agent_env_note = (
            "simulated GPUs via the NVML test library (no GPU on this machine)"
            if gpu_env
            else "no NVML here: the agent reports without a GPU section"
        )
        self.env.update(gpu_env)
        self.say(f"$ backstop --insecure agent run --node-id demo-node   ({agent_env_note})")
        self.spawn(
            "agent",
            [
                sys.executable,
                "-m",
                "backstop",
                "agent",
                "run",
                "--node-id",
                "demo-node",
                "--state-dir",
                str(self.workdir / "agent-state"),
                "--report-interval",
                "1",
            ],
        )
        workloads = _wait_for(self._workloads, 30, "the agent to report the model")
        model_hash = workloads[0]["fingerprint"]["model_hash"]
        self.backstop("nodes")

        self.step("See what runs: the model server is found and fingerprinted")
        self.backstop("workloads")
        self.say(f"model hash {model_hash[:16]}... identifies these weights on any node")
        return model, model_hash, gpu_env

    def _correct(
        self, model: subprocess.Popen[bytes], model_hash: str, gpu_env: dict[str, str]
    ) -> None:
        self.step("Pause it by model hash")
        out = self.backstop(
            "pause", "--model", model_hash[:16], "--reason", "demo: suspected misuse", "--wait"
        )
        paused_id = out.split()[0]
        self.say(f"process states: {self.proc_states()}   (T = stopped)")
        self.say(f"request: {self.ask('hello again')}")

        self.step("Resume it")
        self.backstop("resume", paused_id, "--reason", "demo: cleared", "--wait")
        self.say(f"process states: {self.proc_states()}")
        self.say(f"request: {self.ask('hello again')}")

        self.step("Throttle it: GPU power capped at 40% of the default")
        out = self.backstop(
            "throttle",
            "--model",
            model_hash[:16],
            "--power-fraction",
            "0.4",
            "--reason",
            "demo: slow it down",
            "--wait",
            check=False,
        )
        if gpu_env:
            self.say(f"simulated GPU 0 power limit now {simgpu.power_limit_w(self.workdir):.0f} W")
            self.backstop("resume", out.split()[0], "--reason", "demo: lift the cap", "--wait")
            self.say(
                f"simulated GPU 0 power limit back to {simgpu.power_limit_w(self.workdir):.0f} W"
            )

        self.step("Terminate it (severe: SIGTERM, grace period, SIGKILL of the whole tree)")
        self.backstop(
            "terminate",
            "--model",
            model_hash[:16],
            "--grace",
            "3",
            "--reason",
            "demo: confirmed misuse",
            "--yes",
            "--wait",
        )
        code = _wait_for(model.poll, 10, "the model server to exit")
        self.say(f"model server exited with {code}; {self.proc_states()}")
        self.say(f"request: {self.ask('anyone there?')}")

    def _workloads(self) -> list[dict[str, Any]] | None:
        out = self.backstop("workloads", "-o", "json", show=False, check=False)
        try:
            found = [w for w in json.loads(out or "[]") if w["fingerprint"].get("model_hash")]
        except ValueError:
            return None
        return found or None

    def stop(self) -> None:
        stop_process_groups(self.procs)


def _read(path: Path) -> str | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    return text or None


def _children(pid: int) -> Iterator[int]:
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{tid}/children").read_text()
            yield from (int(c) for c in text.split())


def _wait_for(probe: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value is not None:
            return value
        time.sleep(0.2)
    raise Unavailable(f"timed out after {timeout_s:g} s waiting for {what}")


def run_demo(pace_s: float = 1.0) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="backstop-demo-"))
    demo = Demo(workdir, pace_s)
    print("Backstop demo: a controller, an agent and a model server on this machine.")
    try:
        code = demo.run()
    except BackstopError as exc:
        print(f"\ndemo failed: {exc.message}; logs in {workdir}", file=sys.stderr)
        for log in sorted(workdir.glob("*.log")):
            print(f"--- {log.name} (last lines)", file=sys.stderr)
            print("\n".join(log.read_text(errors="replace").splitlines()[-15:]), file=sys.stderr)
        return 1
    else:
        print("\nDemo complete: found, paused, resumed, throttled and terminated a model server.")
        return code
    finally:
        demo.stop()
        if os.environ.get("BACKSTOP_DEMO_KEEP") != "1":
            shutil.rmtree(workdir, ignore_errors=True)
