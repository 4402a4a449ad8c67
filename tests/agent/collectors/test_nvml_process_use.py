"""Per-process SM share and MIG instances, through the real pynvml into the NVML test library."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from backstop.agent.collectors.nvml import NvmlBackend
from backstop.core.models import GpuProcess
from tests.support.fake_nvml import FakeNvml, FakeProcess, default_gpus, fake_nvml

__all__ = ["fake_nvml"]


@pytest.fixture
def backend(fake_nvml: FakeNvml) -> Iterator[NvmlBackend]:
    nvml = NvmlBackend()
    yield nvml
    nvml.close()


def by_pid(processes: tuple[GpuProcess, ...]) -> dict[int, GpuProcess]:
    return {p.pid: p for p in processes}


def test_sm_share_is_reported_per_process(fake_nvml: FakeNvml, backend: NvmlBackend) -> None:
    gpus = default_gpus(1)
    fake_nvml.write(
        gpus,
        [
            FakeProcess(0, 501, 2**30, sm_util_pct=62, memory_util_pct=30, sample_ts_us=1000),
            FakeProcess(0, 502, 2**30, sm_util_pct=7, sample_ts_us=1000),
            FakeProcess(0, 503, 2**30),  # no sample: it did not run
        ],
    )
    assert backend.start()

    got = by_pid(backend.collect().processes)

    assert {pid: p.sm_util_pct for pid, p in got.items()} == {501: 62, 502: 7, 503: 0}
    assert all(p.gpu_instance_id is None and p.compute_instance_id is None for p in got.values())


def test_each_sample_covers_only_the_time_since_the_last(
    fake_nvml: FakeNvml, backend: NvmlBackend
) -> None:
    gpus = default_gpus(1)
    fake_nvml.write(gpus, [FakeProcess(0, 501, 2**30, sm_util_pct=80, sample_ts_us=1000)])
    assert backend.start()
    assert backend.collect().processes[0].sm_util_pct == 80

    # Nothing newer than the timestamp the last sample saw: NVML answers NOT_FOUND.
    assert backend.collect().processes[0].sm_util_pct == 0

    fake_nvml.write(gpus, [FakeProcess(0, 501, 2**30, sm_util_pct=35, sample_ts_us=2000)])
    assert backend.collect().processes[0].sm_util_pct == 35


def test_a_process_busy_all_along_has_its_share_in_every_sample(
    fake_nvml: FakeNvml, backend: NvmlBackend
) -> None:
    fake_nvml.write(default_gpus(1), [FakeProcess(0, 501, 2**30, sm_util_pct=45)])
    assert backend.start()
    assert [backend.collect().processes[0].sm_util_pct for _ in range(3)] == [45, 45, 45]


def test_mig_instances_are_reported_where_mig_is_on(
    fake_nvml: FakeNvml, backend: NvmlBackend
) -> None:
    gpus = default_gpus(2)
    gpus[0] = dataclasses.replace(gpus[0], mig=True)
    fake_nvml.write(
        gpus,
        [
            FakeProcess(0, 601, 2**30, gpu_instance_id=1, compute_instance_id=0),
            FakeProcess(0, 602, 2**30, gpu_instance_id=2, compute_instance_id=1),
            # MIG off: NVML gives no instance, whatever the process was started with
            FakeProcess(1, 603, 2**30, gpu_instance_id=3, compute_instance_id=3),
        ],
    )
    assert backend.start()

    got = by_pid(backend.collect().processes)

    assert (got[601].gpu_instance_id, got[601].compute_instance_id) == (1, 0)
    assert (got[602].gpu_instance_id, got[602].compute_instance_id) == (2, 1)
    assert (got[603].gpu_instance_id, got[603].compute_instance_id) == (None, None)


@pytest.mark.parametrize("code", ["NOT_SUPPORTED", "UNKNOWN"])
def test_a_refused_reading_degrades_its_field_not_the_sample(
    fake_nvml: FakeNvml, backend: NvmlBackend, code: str
) -> None:
    gpus = default_gpus(2)
    gpus[0] = dataclasses.replace(gpus[0], mig=True, failures={"process_util": code, "mig": code})
    fake_nvml.write(
        gpus,
        [
            FakeProcess(
                0, 701, 3 * 2**30, sm_util_pct=50, gpu_instance_id=1, compute_instance_id=2
            ),
            FakeProcess(1, 702, 2**30, sm_util_pct=20),
        ],
    )
    assert backend.start()

    snapshot = backend.collect()

    assert len(snapshot.gpus) == 2
    assert by_pid(snapshot.processes) == {
        701: GpuProcess(gpus[0].uuid, 701, 3 * 2**30),  # memory kept, SM share and MIG unset
        702: GpuProcess(gpus[1].uuid, 702, 2**30, sm_util_pct=20),
    }
    if code == "NOT_SUPPORTED":
        assert snapshot.errors == ()
    else:
        assert len(snapshot.errors) == 2
        assert all(gpus[0].uuid in e for e in snapshot.errors)
