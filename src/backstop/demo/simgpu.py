"""Simulated GPUs for the demo: two H100s from the NVML test library, the model on GPU 0."""

from __future__ import annotations

from pathlib import Path

from backstop.core.errors import NotSupported
from backstop.simgpu import FakeNvml, FakeProcess, default_gpus, idle_unless_listed

GPU_COUNT = 2
MODEL_MEMORY_BYTES = 18 * 2**30


def _fake(workdir: Path) -> FakeNvml:
    return FakeNvml(workdir / "simgpu")


def prepare(workdir: Path, gpu_pids: list[int]) -> dict[str, str]:
    """Environment that makes an agent see simulated GPUs; empty when gcc is missing."""
    try:
        fake = _fake(workdir)
    except NotSupported:
        return {}
    processes = [
        FakeProcess(gpu=0, pid=pid, used_memory_bytes=MODEL_MEMORY_BYTES) for pid in gpu_pids
    ]
    fake.write(idle_unless_listed(default_gpus(GPU_COUNT), processes), processes)
    env = fake.env({})
    return {
        k: env[k]
        for k in ("LD_LIBRARY_PATH", "BACKSTOP_FAKE_NVML_SCENARIO", "BACKSTOP_FAKE_NVML_STATE")
    }


def power_limit_w(workdir: Path) -> float:
    """The power limit of simulated GPU 0 now (the default when none was set)."""
    fake = _fake(workdir)
    gpu = default_gpus(GPU_COUNT)[0]
    return fake.power_limits().get(gpu.uuid, gpu.default_limit_mw) / 1000
