"""Agent cost at 1 s sampling with 8 GPUs and 1,000 processes, against node_exporter.

Starts a controller, 1,000 real processes (``sleep``), 8 simulated GPUs (the NVML test
library) with 8 of the processes holding GPU contexts (each busy on half of its GPU's SMs),
and one agent reporting every second.
After a warm-up, CPU time and RSS of the agent are sampled from /proc for the measuring
window, while its ``/metrics`` is scraped every ``--scrape-interval`` seconds (the chart
always serves it). In the same run, Prometheus node_exporter (built with ``go install``, default
collectors) is scraped every second for the same window, as a baseline from a well-known node
daemon.

    .venv/bin/python bench/agent_cost.py --processes 1000 --seconds 60
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from daemons import start_agent, start_controller

from backstop.simgpu import FakeNvml, FakeProcess, default_gpus

CLK_TCK = os.sysconf("SC_CLK_TCK")
AGENT_METRICS_PORT = 19464
NODE_EXPORTER = "github.com/prometheus/node_exporter@v1.9.1"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(pid: int, seconds: float, tick: Callable[[], None]) -> tuple[float, float, float]:
    """(CPU % of one core, median RSS MiB, max RSS MiB) over the window."""
    start_cpu, start = cpu_seconds(pid), time.monotonic()
    rss: list[float] = []
    while time.monotonic() - start < seconds:
        tick()
        rss.append(rss_mib(pid))
        time.sleep(1.0)
    cpu = (cpu_seconds(pid) - start_cpu) / (time.monotonic() - start) * 100
    rss.sort()
    return cpu, rss[len(rss) // 2], rss[-1]


def every(interval: float, url: str) -> Callable[[], None]:
    """A tick that GETs ``url`` when ``interval`` seconds have passed since the last time
    (never when ``interval`` is 0)."""
    if not interval:
        return lambda: None
    last = [0.0]

    def tick() -> None:
        if time.monotonic() - last[0] >= interval - 0.05:
            last[0] = time.monotonic()
            with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - http on loopback
                r.read()

    return tick


def compile_bytecode() -> None:
    """Compile the agent's modules and its libraries to bytecode, as the agent image installs
    them (``uv pip install --compile-bytecode``): without it every start compiles them again,
    and the compiler's peak stays in the process's RSS (about 5 MiB)."""
    import backstop

    paths = [sysconfig.get_paths()["purelib"], str(Path(backstop.__file__).parent)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "-j0", *paths],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def node_exporter_binary(cache: Path) -> Path:
    binary = cache / "node_exporter"
    if not binary.exists():
        cache.mkdir(parents=True, exist_ok=True)
        print(f"building {NODE_EXPORTER} (once) ...", file=sys.stderr)
        subprocess.run(
            ["go", "install", NODE_EXPORTER], check=True, env=dict(os.environ, GOBIN=str(cache))
        )
    return binary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--processes", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument(
        "--agent-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the agent (e.g. MALLOC_ARENA_MAX=2); repeatable",
    )
    parser.add_argument(
        "--scrape-interval",
        type=float,
        default=1.0,
        help="seconds between scrapes of the agent's /metrics (0: not served); default 1, "
        "as node_exporter is scraped",
    )
    parser.add_argument(
        "--no-bytecode", action="store_true", help="do not compile to bytecode first"
    )
    args = parser.parse_args()
    if not args.no_bytecode:
        compile_bytecode()
    procs: list[subprocess.Popen[bytes]] = []
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "backstop" / "bench"
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp:
        work = Path(tmp)
        try:
            sleeper = shutil.which("sleep") or "/bin/sleep"
            workers = [
                subprocess.Popen([sleeper, "3600"], start_new_session=True)
                for _ in range(args.processes)
            ]
            procs += workers
            gpus = FakeNvml(work / "gpu")
            gpus.write(
                default_gpus(8),
                [FakeProcess(i, workers[i].pid, 2**30, sm_util_pct=50) for i in range(8)],
            )
            controller, address = start_controller(work, "--report-interval", "1")
            procs.append(controller)
            agent_env = {**gpus.env(), **dict(e.split("=", 1) for e in args.agent_env)}
            served = ("--metrics-listen", f"127.0.0.1:{AGENT_METRICS_PORT}")
            flags = ("--report-interval", "1", *(served if args.scrape_interval else ()))
            agent = start_agent(work, address, "bench", agent_env, *flags)
            procs.append(agent)
            time.sleep(args.warmup)
            scrape_agent = every(
                args.scrape_interval, f"http://127.0.0.1:{AGENT_METRICS_PORT}/metrics"
            )
            agent_cpu, agent_rss, agent_max = measure(agent.pid, args.seconds, scrape_agent)

            exporter = subprocess.Popen(
                [str(node_exporter_binary(cache)), "--web.listen-address=127.0.0.1:19100"],
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            procs.append(exporter)
            time.sleep(2.0)

            scrape = every(1.0, "http://127.0.0.1:19100/metrics")
            for _ in range(int(args.warmup)):
                scrape()
                time.sleep(1.0)
            ne_cpu, ne_rss, ne_max = measure(exporter.pid, args.seconds, scrape)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
    print("| daemon | sampling | CPU (% of one core) | RSS median | RSS max |")
    print("|---|---|---|---|---|")
    print(
        f"| backstop agent ({args.processes} processes, 8 GPUs) | 1 s, report every 1 s, "
        f"{f'scraped every {args.scrape_interval:g} s' if args.scrape_interval else 'not scraped'} "
        f"| {agent_cpu:.2f} % | {agent_rss:.1f} MiB | {agent_max:.1f} MiB |"
    )
    print(
        f"| node_exporter (default collectors) | scraped every 1 s "
        f"| {ne_cpu:.2f} % | {ne_rss:.1f} MiB | {ne_max:.1f} MiB |"
    )


if __name__ == "__main__":
    main()
