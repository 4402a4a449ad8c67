"""GPU use the agent cannot attribute is reported, never dropped: a process NVML lists from
another PID namespace or that is gone (a real agent sampler run inside a new PID namespace,
through the NVML test library and real pynvml), and GPUs busy with no process listed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from backstop.agent.actuators.workload_actuator import ProcessActuator
from backstop.agent.unattributed import RecentlyAttributed, unattributed_workloads
from backstop.core.models import Fingerprint, GpuProcess, GpuSample, Workload
from backstop.simgpu import FakeGpu, FakeNvml, FakeProcess, default_gpus
from tests.agent.fingerprint.children import Spawner

GPU_A, GPU_B, GPU_C = "GPU-a", "GPU-b", "GPU-c"


def _gpu(uuid: str, used: int = 0, util: int | None = 0) -> GpuSample:
    return GpuSample(0, uuid, "NVIDIA H100", utilization_pct=util, memory_used_bytes=used)


def test_each_unexplained_use_gets_a_workload_with_its_reason() -> None:
    known = Workload("wl-1", "n1", 10, (10, 11), Fingerprint())
    found = unattributed_workloads(
        "n1",
        [_gpu(GPU_A, 40 << 30, 90), _gpu(GPU_B, 2 << 30, 0), _gpu(GPU_C, 100 << 20, 0)],
        [
            GpuProcess(GPU_A, 11, 10 << 30),  # attributed: part of wl-1
            GpuProcess(GPU_A, 4242, 30 << 30),  # not in view
            GpuProcess(GPU_A, 77, 1 << 30),  # visible, outside the cgroup prefix
            GpuProcess(GPU_A, 1, 1 << 30),  # pid 1 of a container's namespace: not init here
        ],
        [known],
        visible={1, 10, 11, 77},
        in_scope={1, 10, 11},
    )
    by_pid = {w.root_pid: w for w in found}
    assert set(by_pid) == {4242, 77, 1, 0}
    assert "here is init" in by_pid[1].unattributed
    assert "no such process in the agent's view" in by_pid[4242].unattributed
    assert "NVIDIA H100 GPU-a (30720 MiB)" in by_pid[4242].unattributed
    assert by_pid[4242].fingerprint.gpus[0].used_memory_bytes == 30 << 30
    assert by_pid[4242].pids == ()  # nothing to signal
    assert "outside --cgroup-prefix" in by_pid[77].unattributed
    busy = by_pid[0]
    assert busy.fingerprint.gpus[0].gpu_uuid == GPU_B  # 2 GiB used, nothing listed
    assert "with no process listed" in busy.unattributed
    assert all(w.labels["backstop.io/kind"] == "unattributed" for w in found)
    assert len({w.workload_id for w in found}) == 4  # GPU-c: an idle driver's 100 MiB


def test_a_process_that_just_left_a_workload_is_not_unattributed_until_the_grace_ends() -> None:
    recent = RecentlyAttributed(grace_s=30.0)
    gpus, listed = [_gpu(GPU_A, 8 << 30, 50)], [GpuProcess(GPU_A, 10, 8 << 30)]
    serving = Workload("wl-1", "n1", 10, (10,), Fingerprint())
    assert recent.exiting([serving], visible={10}, now=100.0) == set()

    def report(now: float) -> list[Workload]:
        gone = recent.exiting([], visible=set(), now=now)  # it exited; NVML still lists it
        return unattributed_workloads(
            "n1", gpus, listed, [], visible=set(), in_scope=set(), exiting=gone
        )

    assert report(110.0) == []  # the driver frees the context a little after the exit
    (stale,) = report(131.0)  # still listed past the grace: reported
    assert "no such process" in stale.unattributed


def test_the_actuator_never_signals_an_unattributed_pid() -> None:
    workload = Workload(
        "wl-x", "n1", 1, (), Fingerprint(), unattributed="NVML lists pid 1: not in view"
    )
    actuator = ProcessActuator()
    for result in (actuator.pause(workload), actuator.terminate(workload, grace_s=0.1)):
        assert result.outcome == "failed"
        assert "never signalled" in result.detail
        assert "throttle" in result.detail


SAMPLE_IN_NAMESPACE = """
import json, sys
from backstop.agent.collectors.nvml import NvmlBackend
from backstop.agent.collectors.processes import ProcessCollector
from backstop.agent.discovery import WorkloadDiscovery
from backstop.agent.sampler import Sampler
nvml = NvmlBackend()
assert nvml.start(), "the NVML test library did not load"
sample = Sampler(nvml, ProcessCollector(), WorkloadDiscovery("node-ns")).sample()
print(json.dumps([
    {"pid": w.root_pid, "why": w.unattributed, "gpus": [g.gpu_uuid for g in w.fingerprint.gpus]}
    for w in sample.workloads if w.unattributed
]))
"""


def test_an_agent_in_its_own_pid_namespace_reports_what_it_cannot_see(
    spawner: Spawner, tmp_path: Path
) -> None:
    host_process = spawner.python("import time; print('up', flush=True); time.sleep(600)")
    assert host_process.read_line() == "up"
    gone = 4_000_000  # above any pid_max: no such process anywhere
    gpus = [*default_gpus(1), FakeGpu(uuid="GPU-idle", utilization_pct=0, memory_used_bytes=0)]
    fake = FakeNvml(tmp_path / "nvml")
    fake.write(gpus, [FakeProcess(0, host_process.pid, 8 << 30), FakeProcess(0, gone, 1 << 30)])
    run = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", SAMPLE_IN_NAMESPACE],
        env=fake.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    reported = {r["pid"]: r for r in json.loads(run.stdout.splitlines()[-1])}
    assert set(reported) == {host_process.pid, gone}  # as NVML reports them; the idle GPU: none
    for entry in reported.values():
        assert "no such process in the agent's view" in entry["why"]
        assert entry["gpus"] == [gpus[0].uuid]
