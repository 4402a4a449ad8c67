"""The ``fake_nvml`` pytest fixture over :mod:`backstop.simgpu` (the NVML test library)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backstop.simgpu import (
    SCENARIO_ENV,
    STATE_ENV,
    FakeGpu,
    FakeNvml,
    FakeProcess,
    build_library,
    default_gpus,
    preload,
    render_scenario,
)

__all__ = [
    "FakeGpu",
    "FakeNvml",
    "FakeProcess",
    "build_library",
    "default_gpus",
    "fake_nvml",
    "preload",
    "render_scenario",
]


@pytest.fixture
def fake_nvml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNvml]:
    """A :class:`FakeNvml` in ``tmp_path``, loaded into this process and in the environment.

    No scenario is written: until the test calls ``write``, NVML reports that the driver
    is not loaded.
    """
    fake = FakeNvml(tmp_path / "nvml")
    monkeypatch.setenv(SCENARIO_ENV, str(fake.scenario_path))
    monkeypatch.setenv(STATE_ENV, str(fake.state_path))
    fake.preload()
    fake.reset()
    yield fake
    fake.reset()
