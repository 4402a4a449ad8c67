"""A real controller and two real agents; the workloads are plain child processes that the
test NVML library shows on a GPU. node-a runs one whose command line holds terminal escape
codes and a newline (what a tenant controls), on a GPU without per-process utilisation;
node-b runs two ordinary ones, one of them busy on the GPU's SMs.

The controller waits 60 s for an ack (``--ack-timeout``), so a target stays dispatched
while its agent is stopped (SIGSTOP): the tests of ``--wait`` rely on that.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backstop.simgpu import FakeNvml, FakeProcess, default_gpus
from tests.e2e.conftest import TestCgroups
from tests.support.cgroups import scratch_cgroup
from tests.support.cluster import LocalCluster, cluster, wait_for

__all__ = ["cluster", "rig"]

HOSTILE_ARGV0 = "\x1b[2J\x1b[Hpwned\ntwo\u202eevil"
"""The hostile process's argv[0] (what ps shows first): clear the screen, home the cursor,
split the row, reverse what follows."""
SLEEPER = "import time; time.sleep(600)"
ACK_TIMEOUT = ("--ack-timeout", "60")
B1_SM_PCT = 40


@dataclass
class Rig:
    cluster: LocalCluster
    hostile: subprocess.Popen[bytes]
    b1: subprocess.Popen[bytes]
    b2: subprocess.Popen[bytes]

    def stop_agent(self, node_id: str) -> None:
        os.killpg(self.cluster.agents[node_id].pid, signal.SIGSTOP)

    def continue_agent(self, node_id: str) -> None:
        os.killpg(self.cluster.agents[node_id].pid, signal.SIGCONT)

    def workload_id(self, pid: int) -> str:
        return str(self.cluster.wait_for_workload(pid)["workload_id"])


def _child(
    local: LocalCluster, cgroup: Path, *args: str, argv0: str = ""
) -> subprocess.Popen[bytes]:
    procs_file = str(cgroup / "cgroup.procs")

    def enter_cgroup() -> None:
        with open(procs_file, "w") as fh:
            fh.write("0")

    proc = subprocess.Popen(
        [argv0 or sys.executable, "-c", SLEEPER, *args],
        executable=sys.executable,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=enter_cgroup,  # noqa: PLW1509 - single-threaded test process
    )
    local.procs.append(proc)
    return proc


@pytest.fixture
def rig(cluster: LocalCluster) -> Iterator[Rig]:
    with scratch_cgroup("backstop-cli") as root:
        cgroups = TestCgroups(root)
        try:
            cluster.start_controller("127.0.0.1:0", *ACK_TIMEOUT)
            a, b = cgroups.make("node-a/w"), cgroups.make("node-b/w")
            hostile = _child(cluster, a, argv0=HOSTILE_ARGV0)
            b1, b2 = _child(cluster, b, "b1"), _child(cluster, b, "b2")
            # node-a's GPU gives no per-process utilisation; on node-b, b1 keeps 40 % of the
            # SMs busy and b2 none.
            for node_id, procs in (("node-a", [hostile]), ("node-b", [b1, b2])):
                gpus = default_gpus(1)
                if node_id == "node-a":
                    gpus = [dataclasses.replace(gpus[0], not_supported=("process_util",))]
                gpu = FakeNvml(cluster.workdir / f"gpu-{node_id}")
                gpu.write(
                    gpus,
                    [
                        FakeProcess(0, p.pid, 2**30, sm_util_pct=B1_SM_PCT if p is b1 else None)
                        for p in procs
                    ],
                )
                prefix = cgroups.path_of(root / node_id)
                cluster.start_agent(node_id, gpu.env(), "--cgroup-prefix", prefix)
            for proc in (hostile, b1, b2):
                cluster.wait_for_workload(proc.pid)
            wait_for(lambda: all(n["connected"] for n in cluster.json("nodes")), 20, "agents")
            yield Rig(cluster, hostile, b1, b2)
        finally:
            for agent in cluster.agents.values():  # a stopped agent cannot stop
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(agent.pid, signal.SIGCONT)
            cluster.stop()
