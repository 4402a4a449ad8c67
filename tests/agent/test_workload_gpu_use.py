"""A workload's GPU use per GPU: memory summed, SM share summed (unset if any process has
none), MIG instance only when all its processes share one; unattributed use carries it too."""

from __future__ import annotations

from backstop.agent.unattributed import unattributed_workloads
from backstop.agent.workload_record import gpu_uses
from backstop.core.models import GpuProcess, GpuUse


def test_shares_and_memory_are_summed_per_gpu() -> None:
    procs = [
        GpuProcess("GPU-a", 10, 2**30, sm_util_pct=30),
        GpuProcess("GPU-a", 11, 2**30, sm_util_pct=25),
        GpuProcess("GPU-b", 10, 2**20, sm_util_pct=80),
        GpuProcess("GPU-b", 99, 2**20, sm_util_pct=90),  # not the workload's
    ]
    assert gpu_uses({10, 11}, procs) == (
        GpuUse("GPU-a", 2**31, sm_util_pct=55),
        GpuUse("GPU-b", 2**20, sm_util_pct=80),
    )


def test_a_share_is_at_most_100_and_unset_when_one_process_has_none() -> None:
    procs = [
        GpuProcess("GPU-a", 10, 0, sm_util_pct=70),
        GpuProcess("GPU-a", 11, 0, sm_util_pct=60),
        GpuProcess("GPU-b", 10, 0, sm_util_pct=70),
        GpuProcess("GPU-b", 11, 0),
    ]
    a, b = gpu_uses({10, 11}, procs)
    assert a.sm_util_pct == 100
    assert b.sm_util_pct is None


def test_a_mig_instance_is_set_only_when_all_processes_share_it() -> None:
    same = [
        GpuProcess("GPU-a", 10, 0, gpu_instance_id=1, compute_instance_id=0),
        GpuProcess("GPU-a", 11, 0, gpu_instance_id=1, compute_instance_id=0),
    ]
    mixed = [*same, GpuProcess("GPU-a", 12, 0, gpu_instance_id=2, compute_instance_id=0)]
    (one,) = gpu_uses({10, 11}, same)
    assert (one.gpu_instance_id, one.compute_instance_id) == (1, 0)
    (several,) = gpu_uses({10, 11, 12}, mixed)
    assert (several.gpu_instance_id, several.compute_instance_id) == (None, None)


def test_unattributed_use_carries_its_sm_share() -> None:
    (found,) = unattributed_workloads(
        "node", [], [GpuProcess("GPU-a", 4242, 2**30, sm_util_pct=97)], [],
        visible=(), in_scope=(),
    )  # fmt: skip
    assert found.fingerprint.gpus == (GpuUse("GPU-a", 2**30, sm_util_pct=97),)
    assert "97% SM" in found.unattributed
