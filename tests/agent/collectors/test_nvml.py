"""NvmlBackend through the real pynvml into the NVML test library."""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pynvml
import pytest

from backstop.agent.collectors.nvml import NvmlBackend, PowerLimits
from backstop.agent.collectors.nvml_counters import GpuCounters
from backstop.core.errors import (
    ActuationError,
    CollectorError,
    InvalidInput,
    NotFound,
    NotSupported,
    Unavailable,
)
from backstop.core.models import GpuProcess, GpuSample
from tests.support.fake_nvml import (
    STATE_ENV,
    FakeGpu,
    FakeNvml,
    FakeProcess,
    default_gpus,
    fake_nvml,
)

__all__ = ["fake_nvml"]  # the fixture, found by pytest in this module

REPO_ROOT = Path(__file__).resolve().parents[3]
SRC = REPO_ROOT / "src"


@pytest.fixture
def backend(fake_nvml: FakeNvml) -> Iterator[NvmlBackend]:
    """An unstarted backend, closed after the test (before the library is reset)."""
    nvml = NvmlBackend()
    yield nvml
    nvml.close()


def expected_sample(index: int, gpu: FakeGpu) -> GpuSample:
    """What NVML should report for ``gpu`` when nothing has been set or failed."""
    limit = gpu.power_limit_mw if gpu.power_limit_mw is not None else gpu.default_limit_mw
    return GpuSample(
        index=index,
        uuid=gpu.uuid,
        name=gpu.name,
        utilization_pct=gpu.utilization_pct,
        memory_utilization_pct=gpu.memory_utilization_pct,
        memory_used_bytes=gpu.memory_used_bytes,
        memory_total_bytes=gpu.memory_total_bytes,
        power_mw=min(gpu.power_mw, limit),
        power_limit_mw=limit,
        power_default_limit_mw=gpu.default_limit_mw,
        temperature_c=gpu.temperature_c,
        sm_clock_mhz=gpu.sm_clock_mhz,
        memory_clock_mhz=gpu.memory_clock_mhz,
    )


class TestSampling:
    def test_every_gpu_is_sampled_with_every_field(
        self, fake_nvml: FakeNvml, backend: NvmlBackend
    ) -> None:
        gpus = default_gpus(3)
        gpus[2] = dataclasses.replace(gpus[2], name="NVIDIA A100-SXM4-40GB", power_limit_mw=300_000)
        fake_nvml.write(gpus, driver_version="535.183.01")

        assert backend.start() is True
        assert backend.available
        snapshot = backend.collect()

        assert snapshot.gpus == tuple(expected_sample(i, gpu) for i, gpu in enumerate(gpus))
        assert snapshot.processes == ()
        assert snapshot.errors == ()
        assert backend.driver_version() == "535.183.01"

    def test_processes_are_listed_per_gpu_with_memory(
        self, fake_nvml: FakeNvml, backend: NvmlBackend
    ) -> None:
        gpus = default_gpus(3)
        fake_nvml.write(
            gpus,
            [
                FakeProcess(gpu=0, pid=4101, used_memory_bytes=30 * 2**30),
                FakeProcess(gpu=0, pid=4102, used_memory_bytes=512 * 2**20),
                FakeProcess(gpu=1, pid=4101, used_memory_bytes=29 * 2**30),
                FakeProcess(gpu=1, pid=4200),  # memory not available
                FakeProcess(gpu=1, pid=4300, used_memory_bytes=2**20, kind="graphics"),
                # compute and graphics context in one process: listed once
                FakeProcess(gpu=1, pid=4101, used_memory_bytes=29 * 2**30, kind="graphics"),
            ],
        )
        assert backend.start()

        snapshot = backend.collect()

        assert sorted(snapshot.processes, key=lambda p: (p.gpu_uuid, p.pid)) == sorted(
            [
                GpuProcess(gpus[0].uuid, 4101, 30 * 2**30, sm_util_pct=0),
                GpuProcess(gpus[0].uuid, 4102, 512 * 2**20, sm_util_pct=0),
                GpuProcess(gpus[1].uuid, 4101, 29 * 2**30, sm_util_pct=0),
                GpuProcess(gpus[1].uuid, 4200, None, sm_util_pct=0),
                GpuProcess(gpus[1].uuid, 4300, 2**20, sm_util_pct=0),
            ],
            key=lambda p: (p.gpu_uuid, p.pid),
        )
        assert snapshot.errors == ()

    def test_a_scenario_change_is_seen_on_the_next_collect(
        self, fake_nvml: FakeNvml, backend: NvmlBackend
    ) -> None:
        gpus = default_gpus(2)
        fake_nvml.write(gpus)
        assert backend.start()
        first = backend.collect()
        assert [g.utilization_pct for g in first.gpus] == [gpus[0].utilization_pct, 60]

        busier = [dataclasses.replace(g, utilization_pct=99, temperature_c=83) for g in gpus]
        fake_nvml.write(busier, [FakeProcess(gpu=1, pid=777, used_memory_bytes=2**30)])
        second = backend.collect()
        assert [(g.utilization_pct, g.temperature_c) for g in second.gpus] == [(99, 83)] * 2
        assert second.processes == (GpuProcess(gpus[1].uuid, 777, 2**30, sm_util_pct=0),)

        grown = default_gpus(4)
        fake_nvml.write(grown)
        third = backend.collect()
        assert [g.uuid for g in third.gpus] == [g.uuid for g in grown]
        assert third.processes == ()

        fake_nvml.write(grown[:1])
        assert [g.uuid for g in backend.collect().gpus] == [grown[0].uuid]

    def test_rewrites_of_the_same_size_in_quick_succession_are_all_seen(
        self, fake_nvml: FakeNvml, backend: NvmlBackend
    ) -> None:
        gpu = default_gpus(1)[0]
        fake_nvml.write([dataclasses.replace(gpu, utilization_pct=10)])
        assert backend.start()
        for utilization in range(11, 31):
            fake_nvml.write([dataclasses.replace(gpu, utilization_pct=utilization)])
            assert backend.collect().gpus[0].utilization_pct == utilization

    def test_health_counters_and_xids_are_read(
        self, fake_nvml: FakeNvml, backend: NvmlBackend
    ) -> None:
        first, second = default_gpus(2)
        first = dataclasses.replace(
            first, energy_mj=5_000_000, ecc_sbe_volatile=7, ecc_dbe_volatile=2, xids=(13,)
        )
        second = dataclasses.replace(second, not_supported=("energy", "ecc", "events"))
        fake_nvml.write([first, second])
        assert backend.start()

        counters = backend.collect().counters
        assert counters == (
            GpuCounters(
                uuid=first.uuid,
                pci_bus_id="00000000:01:00.0",
                memory_free_bytes=first.memory_total_bytes - first.memory_used_bytes,
                energy_mj=5_000_000,
                ecc_sbe_volatile=7,
                ecc_dbe_volatile=2,
                last_xid=13,
            ),
            GpuCounters(
                uuid=second.uuid,
                pci_bus_id="00000000:02:00.0",
                memory_free_bytes=second.memory_total_bytes - second.memory_used_bytes,
            ),
        )
        # Each XID is an event delivered once; the last one raised is kept.
        assert backend.collect().counters[0].last_xid == 13
        fake_nvml.write([dataclasses.replace(first, xids=(13, 79, 48)), second])
        assert backend.collect().counters[0].last_xid == 48


class TestFailures:
    def test_a_lost_gpu_is_left_out_and_named(
        self, fake_nvml: FakeNvml, backend: NvmlBackend
    ) -> None:
        gpus = default_gpus(2)
        procs = [FakeProcess(0, 11, 2**30), FakeProcess(1, 12, 2**30)]
        fake_nvml.write(gpus, procs)
        assert backend.start()
        assert len(backend.collect().gpus) == 2

        fake_nvml.write([gpus[0], dataclasses.replace(gpus[1], lost=True)], procs)
        snapshot = backend.collect()
        assert snapshot.gpus == (expected_sample(0, gpus[0]),)
        assert snapshot.processes == (GpuProcess(gpus[0].uuid, 11, 2**30, sm_util_pct=0),)
        assert snapshot.errors == (f"{gpus[1].uuid}: GPU is lost",)
        # Still lost on the next sample, and still named by its UUID.
        assert backend.collect().errors == (f"{gpus[1].uuid}: GPU is lost",)

        fake_nvml.write(gpus, procs)
        recovered = backend.collect()
        assert [g.uuid for g in recovered.gpus] == [gpus[0].uuid, gpus[1].uuid]
        assert recovered.errors == ()

    def test_a_gpu_lost_before_start_is_named_by_index(
        self, fake_nvml: FakeNvml, backend: NvmlBackend
    ) -> None:
        gpus = default_gpus(3)
        fake_nvml.write([gpus[0], dataclasses.replace(gpus[1], lost=True), gpus[2]])
        assert backend.start()

        snapshot = backend.collect()

        assert [g.uuid for g in snapshot.gpus] == [gpus[0].uuid, gpus[2].uuid]
        assert [g.index for g in snapshot.gpus] == [0, 2]
        assert snapshot.errors == ("GPU 1: GPU is lost",)

    def test_unsupported_fields_are_none_without_errors(
        self, fake_nvml: FakeNvml, backend: NvmlBackend
    ) -> None:
        gpus = default_gpus(2)
        gpus[1] = dataclasses.replace(
            gpus[1], not_supported=("power", "temp", "sm_clock", "util", "processes")
        )
        fake_nvml.write(gpus, [FakeProcess(0, 21, 2**30), FakeProcess(1, 22, 2**30)])
        assert backend.start()

        snapshot = backend.collect()

        assert snapshot.gpus[0] == expected_sample(0, gpus[0])
        assert snapshot.gpus[1] == dataclasses.replace(
            expected_sample(1, gpus[1]),
            power_mw=None,
            temperature_c=None,
            sm_clock_mhz=None,
            utilization_pct=None,
            memory_utilization_pct=None,
        )
        assert snapshot.processes == (GpuProcess(gpus[0].uuid, 21, 2**30, sm_util_pct=0),)
        assert snapshot.errors == ()

    def test_other_field_errors_are_none_and_reported(
        self, fake_nvml: FakeNvml, backend: NvmlBackend
    ) -> None:
        gpus = default_gpus(2)
        gpus[0] = dataclasses.replace(
            gpus[0], failures={"power": "UNKNOWN", "memory": "NO_PERMISSION"}
        )
        fake_nvml.write(gpus)
        assert backend.start()

        snapshot = backend.collect()

        assert snapshot.gpus[0] == dataclasses.replace(
            expected_sample(0, gpus[0]),
            power_mw=None,
            memory_used_bytes=None,
            memory_total_bytes=None,
        )
        assert snapshot.gpus[1] == expected_sample(1, gpus[1])
        assert snapshot.errors == (
            f"{gpus[0].uuid}: memory: Insufficient Permissions",
            f"{gpus[0].uuid}: power: Unknown Error",
        )

    @pytest.mark.parametrize("write_scenario", [False, True], ids=["no-driver", "init-fails"])
    def test_without_a_driver_start_warns_once_and_returns_false(
        self,
        fake_nvml: FakeNvml,
        backend: NvmlBackend,
        caplog: pytest.LogCaptureFixture,
        write_scenario: bool,
    ) -> None:
        if write_scenario:
            fake_nvml.write(default_gpus(2), errors={"init": "DRIVER_NOT_LOADED"})
        caplog.set_level(logging.DEBUG, logger="backstop.agent.collectors.nvml")

        assert backend.start() is False

        assert not backend.available
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1
        assert "Driver Not Loaded" in warnings[0].getMessage()
        with pytest.raises(CollectorError):
            backend.collect()
        with pytest.raises(NotSupported):
            backend.set_power_limit(default_gpus(1)[0].uuid, 300_000)
        with pytest.raises(Unavailable):
            backend.driver_version()

    def test_a_malformed_scenario_makes_nvml_unusable(
        self, fake_nvml: FakeNvml, backend: NvmlBackend, capfd: pytest.CaptureFixture[str]
    ) -> None:
        fake_nvml.scenario_path.write_text("gpu 0 name=no-uuid\n", encoding="utf-8")

        assert backend.start() is False

        assert "gpu without uuid" in capfd.readouterr().err

    def test_a_driver_that_appears_later_is_used_by_a_later_start(
        self, fake_nvml: FakeNvml, backend: NvmlBackend
    ) -> None:
        assert backend.start() is False
        fake_nvml.write(default_gpus(1))
        assert backend.start() is True
        assert len(backend.collect().gpus) == 1

    def test_nvml_failing_as_a_whole_raises_collector_error(
        self, fake_nvml: FakeNvml, backend: NvmlBackend
    ) -> None:
        gpus = default_gpus(2)
        fake_nvml.write(gpus)
        assert backend.start()

        fake_nvml.write(gpus, errors={"count": "UNKNOWN"})
        with pytest.raises(CollectorError, match="Unknown Error"):
            backend.collect()

        fake_nvml.remove()  # driver unloaded under a running agent
        with pytest.raises(CollectorError, match="Driver Not Loaded"):
            backend.collect()

        fake_nvml.write(gpus)
        assert len(backend.collect().gpus) == 2

    def test_close_shuts_nvml_down(self, fake_nvml: FakeNvml) -> None:
        fake_nvml.write(default_gpus(1))
        nvml = NvmlBackend()
        assert nvml.start()

        nvml.close()
        nvml.close()

        assert not nvml.available
        with pytest.raises(CollectorError):
            nvml.collect()
        # The library's own init count is back to zero.
        with pytest.raises(pynvml.NVMLError_Uninitialized):
            pynvml.nvmlDeviceGetCount()


class TestPowerLimits:
    def test_limits_are_read(self, fake_nvml: FakeNvml, backend: NvmlBackend) -> None:
        gpus = default_gpus(2)
        gpus[1] = dataclasses.replace(
            gpus[1],
            power_limit_mw=450_000,
            default_limit_mw=400_000,
            min_limit_mw=150_000,
            max_limit_mw=500_000,
        )
        fake_nvml.write(gpus)
        assert backend.start()

        assert backend.power_limits(gpus[0].uuid) == PowerLimits(700_000, 700_000, 200_000, 700_000)
        assert backend.power_limits(gpus[1].uuid) == PowerLimits(450_000, 400_000, 150_000, 500_000)

    def test_a_limit_set_is_visible_in_the_state_file_and_in_samples(
        self, fake_nvml: FakeNvml, backend: NvmlBackend
    ) -> None:
        gpus = default_gpus(2)
        fake_nvml.write(gpus)
        assert backend.start()

        backend.set_power_limit(gpus[1].uuid, 250_000)

        assert fake_nvml.power_limits() == {gpus[1].uuid: 250_000}
        assert backend.power_limits(gpus[1].uuid).current_mw == 250_000
        sample = backend.collect().gpus[1]
        assert (sample.power_limit_mw, sample.power_mw) == (250_000, 250_000)
        assert backend.collect().gpus[0].power_limit_mw == 700_000

    def test_a_gpu_added_after_start_can_be_limited(
        self, fake_nvml: FakeNvml, backend: NvmlBackend
    ) -> None:
        gpus = default_gpus(3)
        fake_nvml.write(gpus[:2])
        assert backend.start()

        fake_nvml.write(gpus)
        backend.set_power_limit(gpus[2].uuid, 300_000)

        assert fake_nvml.power_limit(gpus[2].uuid) == 300_000

    def test_an_invalid_limit_surfaces_nvmls_error(
        self, fake_nvml: FakeNvml, backend: NvmlBackend
    ) -> None:
        gpus = default_gpus(1)
        fake_nvml.write(gpus)
        assert backend.start()

        with pytest.raises(ActuationError, match="Invalid Argument") as raised:
            backend.set_power_limit(gpus[0].uuid, 900_000)

        assert not isinstance(raised.value, NotSupported)
        assert isinstance(raised.value.__cause__, pynvml.NVMLError_InvalidArgument)
        assert fake_nvml.power_limits() == {}
        with pytest.raises(InvalidInput):
            backend.set_power_limit(gpus[0].uuid, -1)

    def test_no_permission_is_an_actuation_error(
        self, fake_nvml: FakeNvml, backend: NvmlBackend
    ) -> None:
        gpus = [dataclasses.replace(default_gpus(1)[0], no_permission=True)]
        fake_nvml.write(gpus)
        assert backend.start()

        with pytest.raises(ActuationError, match="Insufficient Permissions") as raised:
            backend.set_power_limit(gpus[0].uuid, 300_000)

        assert type(raised.value) is ActuationError
        assert gpus[0].uuid in raised.value.message
        assert fake_nvml.power_limits() == {}

    def test_unsupported_power_capping_is_not_supported(
        self, fake_nvml: FakeNvml, backend: NvmlBackend
    ) -> None:
        gpus = [dataclasses.replace(default_gpus(1)[0], not_supported=("set_limit",))]
        fake_nvml.write(gpus)
        assert backend.start()

        with pytest.raises(NotSupported, match="Not Supported"):
            backend.set_power_limit(gpus[0].uuid, 300_000)

    def test_a_lost_or_unknown_gpu_cannot_be_limited(
        self, fake_nvml: FakeNvml, backend: NvmlBackend
    ) -> None:
        gpus = default_gpus(2)
        fake_nvml.write(gpus)
        assert backend.start()
        fake_nvml.write([gpus[0], dataclasses.replace(gpus[1], lost=True)])

        with pytest.raises(ActuationError, match="GPU is lost"):
            backend.set_power_limit(gpus[1].uuid, 300_000)
        with pytest.raises(ActuationError, match="GPU is lost"):
            backend.power_limits(gpus[1].uuid)
        with pytest.raises(NotFound):
            backend.power_limits("GPU-00000000-0000-0000-0000-000000000000")


CHILD = textwrap.dedent(
    """
    import json, logging, sys
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    from backstop.agent.collectors.nvml import NvmlBackend
    nvml = NvmlBackend(library_path=sys.argv[1] or None)
    started = nvml.start()
    result = {"started": started}
    if started:
        snapshot = nvml.collect()
        nvml.set_power_limit(snapshot.gpus[0].uuid, 280000)
        result["uuids"] = [g.uuid for g in snapshot.gpus]
        result["pids"] = [p.pid for p in snapshot.processes]
        result["driver"] = nvml.driver_version()
        nvml.close()
    print(json.dumps(result))
    """
)


def run_child(env: dict[str, str], library_path: str = "") -> subprocess.CompletedProcess[str]:
    env = {**env, "PYTHONPATH": str(SRC)}
    return subprocess.run(
        [sys.executable, "-c", CHILD, library_path],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


class TestChildProcess:
    def test_a_child_finds_the_library_through_its_environment(self, fake_nvml: FakeNvml) -> None:
        gpus = default_gpus(2)
        fake_nvml.write(gpus, [FakeProcess(1, 5150, 2**30)], driver_version="570.86.15")

        result = json.loads(run_child(fake_nvml.env()).stdout)

        assert result == {
            "started": True,
            "uuids": [g.uuid for g in gpus],
            "pids": [5150],
            "driver": "570.86.15",
        }
        assert fake_nvml.power_limits() == {gpus[0].uuid: 280_000}

    def test_a_child_given_the_library_path_uses_it(self, fake_nvml: FakeNvml) -> None:
        gpus = default_gpus(1)
        fake_nvml.write(gpus)
        env = fake_nvml.env()
        env.pop("LD_LIBRARY_PATH")

        result = json.loads(run_child(env, str(fake_nvml.library_path)).stdout)

        assert result["uuids"] == [gpus[0].uuid]
        assert fake_nvml.power_limit(gpus[0].uuid) == 280_000

    def test_a_child_without_a_driver_keeps_running(self, fake_nvml: FakeNvml) -> None:
        env = fake_nvml.env()
        env.pop(STATE_ENV)

        child = run_child(env)

        assert json.loads(child.stdout) == {"started": False}
        assert child.stderr.count("NVML is not available") == 1
