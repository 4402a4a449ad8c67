"""GPU power throttling through NvmlBackend, the real pynvml and the NVML test library."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from backstop.agent.actuators.gpu_power import restore_gpus, throttle_gpus, throttled_limit
from backstop.agent.collectors.nvml import NvmlBackend, PowerLimits
from backstop.core.errors import ActuationError, InvalidInput, NotFound, NotSupported
from tests.support.fake_nvml import FakeGpu, FakeNvml, default_gpus, fake_nvml

__all__ = ["fake_nvml"]  # the fixture, found by pytest in this module


@pytest.fixture
def gpus() -> list[FakeGpu]:
    """Two H100s; the second runs below its default limit, as an operator may have set it."""
    first, second = default_gpus(2)
    return [first, dataclasses.replace(second, power_limit_mw=650_000)]


@pytest.fixture
def backend(fake_nvml: FakeNvml, gpus: list[FakeGpu]) -> Iterator[NvmlBackend]:
    """A started backend over ``gpus``, closed after the test."""
    fake_nvml.write(gpus)
    nvml = NvmlBackend()
    assert nvml.start()
    yield nvml
    nvml.close()


def uuids(gpus: list[FakeGpu]) -> list[str]:
    return [g.uuid for g in gpus]


class TestThrottle:
    def test_limits_become_the_fraction_of_the_default(
        self, fake_nvml: FakeNvml, backend: NvmlBackend, gpus: list[FakeGpu]
    ) -> None:
        previous = throttle_gpus(backend, uuids(gpus), 0.5)

        assert previous == {gpus[0].uuid: 700_000, gpus[1].uuid: 650_000}
        assert fake_nvml.power_limits() == {gpus[0].uuid: 350_000, gpus[1].uuid: 350_000}
        assert [g.power_limit_mw for g in backend.collect().gpus] == [350_000, 350_000]

    def test_only_the_gpus_named_are_touched(
        self, fake_nvml: FakeNvml, backend: NvmlBackend, gpus: list[FakeGpu]
    ) -> None:
        previous = throttle_gpus(backend, [gpus[1].uuid, gpus[1].uuid], 0.75)

        assert previous == {gpus[1].uuid: 650_000}
        assert fake_nvml.power_limits() == {gpus[1].uuid: 525_000}

    @pytest.mark.parametrize(
        ("fraction", "min_mw", "max_mw", "expected_mw"),
        [
            (0.1, 200_000, 700_000, 200_000),  # 70 W is below what the GPU accepts
            (1.0, 200_000, 600_000, 600_000),  # the default is above the maximum
            (0.4, 200_000, 700_000, 280_000),  # in range: exactly the fraction
        ],
    )
    def test_limits_are_clamped_to_the_gpus_range(
        self,
        fake_nvml: FakeNvml,
        fraction: float,
        min_mw: int,
        max_mw: int,
        expected_mw: int,
    ) -> None:
        gpu = dataclasses.replace(
            default_gpus(1)[0], min_limit_mw=min_mw, max_limit_mw=max_mw, power_limit_mw=450_000
        )
        fake_nvml.write([gpu])
        nvml = NvmlBackend()
        assert nvml.start()
        try:
            throttle_gpus(nvml, [gpu.uuid], fraction)
        finally:
            nvml.close()

        assert fake_nvml.power_limit(gpu.uuid) == expected_mw

    def test_a_gpu_already_at_the_target_is_not_written(
        self, fake_nvml: FakeNvml, gpus: list[FakeGpu]
    ) -> None:
        gpu = dataclasses.replace(gpus[0], power_limit_mw=350_000, no_permission=True)
        fake_nvml.write([gpu])
        nvml = NvmlBackend()
        assert nvml.start()
        try:
            assert throttle_gpus(nvml, [gpu.uuid], 0.5) == {gpu.uuid: 350_000}
        finally:
            nvml.close()

        assert fake_nvml.power_limits() == {}

    def test_a_second_throttle_keeps_the_limit_from_before_backstop(
        self, fake_nvml: FakeNvml, backend: NvmlBackend, gpus: list[FakeGpu]
    ) -> None:
        record: dict[str, int] = {}
        first = throttle_gpus(backend, uuids(gpus), 0.5, record)
        second = throttle_gpus(backend, uuids(gpus), 0.3, record)

        assert first == second == record == {gpus[0].uuid: 700_000, gpus[1].uuid: 650_000}
        assert fake_nvml.power_limits() == {gpus[0].uuid: 210_000, gpus[1].uuid: 210_000}

    def test_without_the_record_a_second_throttle_sees_the_throttled_limit(
        self, backend: NvmlBackend, gpus: list[FakeGpu]
    ) -> None:
        throttle_gpus(backend, [gpus[1].uuid], 0.5)

        assert throttle_gpus(backend, [gpus[1].uuid], 0.3) == {gpus[1].uuid: 350_000}

    @pytest.mark.parametrize("fraction", [0, -0.5, 1.01, float("nan"), float("inf"), True])
    def test_an_invalid_fraction_touches_nothing(
        self, fake_nvml: FakeNvml, backend: NvmlBackend, gpus: list[FakeGpu], fraction: float
    ) -> None:
        with pytest.raises(InvalidInput, match="fraction"):
            throttle_gpus(backend, uuids(gpus), fraction)

        assert fake_nvml.power_limits() == {}

    def test_throttled_limit_rounds_and_clamps(self) -> None:
        limits = PowerLimits(current_mw=700_000, default_mw=700_000, min_mw=100_000, max_mw=650_000)
        assert throttled_limit(limits, 1 / 3) == 233_333
        assert throttled_limit(limits, 0.01) == 100_000
        assert throttled_limit(limits, 1.0) == 650_000


class TestRestore:
    def test_restore_puts_back_exactly_the_previous_limits(
        self, fake_nvml: FakeNvml, backend: NvmlBackend, gpus: list[FakeGpu]
    ) -> None:
        record: dict[str, int] = {}
        throttle_gpus(backend, uuids(gpus), 0.5, record)
        throttle_gpus(backend, uuids(gpus), 0.25, record)

        restore_gpus(backend, record)
        restore_gpus(backend, record)

        assert fake_nvml.power_limits() == {gpus[0].uuid: 700_000, gpus[1].uuid: 650_000}
        assert [g.power_limit_mw for g in backend.collect().gpus] == [700_000, 650_000]

    def test_an_invalid_limit_surfaces_nvmls_error(
        self, fake_nvml: FakeNvml, backend: NvmlBackend, gpus: list[FakeGpu]
    ) -> None:
        with pytest.raises(ActuationError, match="Invalid Argument"):
            restore_gpus(backend, {gpus[0].uuid: 150_000})

        assert fake_nvml.power_limits() == {}


class TestFailures:
    def test_no_permission_is_an_actuation_error_and_the_others_are_throttled(
        self, fake_nvml: FakeNvml, gpus: list[FakeGpu]
    ) -> None:
        locked = dataclasses.replace(gpus[0], no_permission=True)
        fake_nvml.write([locked, gpus[1]])
        nvml = NvmlBackend()
        assert nvml.start()
        record: dict[str, int] = {}
        try:
            with pytest.raises(ActuationError, match="Insufficient Permissions") as raised:
                throttle_gpus(nvml, uuids(gpus), 0.5, record)
        finally:
            nvml.close()

        assert type(raised.value) is ActuationError
        assert locked.uuid in raised.value.message
        assert fake_nvml.power_limits() == {gpus[1].uuid: 350_000}
        # The record still says what to restore for the GPU that was changed.
        assert record[gpus[1].uuid] == 650_000

    def test_every_failure_is_named_in_one_error(
        self, fake_nvml: FakeNvml, gpus: list[FakeGpu]
    ) -> None:
        fake_nvml.write(
            [
                dataclasses.replace(gpus[0], no_permission=True),
                dataclasses.replace(gpus[1], not_supported=("set_limit",)),
            ]
        )
        nvml = NvmlBackend()
        assert nvml.start()
        try:
            with pytest.raises(ActuationError) as raised:
                throttle_gpus(nvml, uuids(gpus), 0.5)
        finally:
            nvml.close()

        assert type(raised.value) is ActuationError
        assert "Insufficient Permissions" in raised.value.message
        assert "Not Supported" in raised.value.message
        assert all(g.uuid in raised.value.message for g in gpus)

    def test_gpus_that_cannot_cap_power_raise_not_supported(
        self, fake_nvml: FakeNvml, gpus: list[FakeGpu]
    ) -> None:
        fake_nvml.write([dataclasses.replace(g, not_supported=("set_limit",)) for g in gpus])
        nvml = NvmlBackend()
        assert nvml.start()
        try:
            with pytest.raises(NotSupported):
                throttle_gpus(nvml, uuids(gpus), 0.5)
        finally:
            nvml.close()

        assert fake_nvml.power_limits() == {}

    def test_an_unknown_gpu_is_not_found(self, backend: NvmlBackend) -> None:
        with pytest.raises(NotFound):
            throttle_gpus(backend, ["GPU-ffffffff-0000-0000-0000-000000000000"], 0.5)

    def test_without_nvml_throttling_is_not_supported(
        self, fake_nvml: FakeNvml, gpus: list[FakeGpu]
    ) -> None:
        nvml = NvmlBackend()
        assert not nvml.start()  # no scenario written: no driver

        with pytest.raises(NotSupported):
            throttle_gpus(nvml, uuids(gpus), 0.5)
        with pytest.raises(NotSupported):
            restore_gpus(nvml, {gpus[0].uuid: 700_000})
        assert fake_nvml.power_limits() == {}
