"""Fixtures for the process and cgroup actuators: real workloads and a scratch cgroup."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cgroups import scratch_cgroup
from tests.support.workloads import WorkloadFactory


@pytest.fixture
def workloads(tmp_path: Path) -> Iterator[WorkloadFactory]:
    """Starts workload processes; every one of them is killed after the test."""
    factory = WorkloadFactory(tmp_path / "workloads")
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def cgroup_dir() -> Iterator[Path]:
    """A fresh cgroup under the cgroup2 mount; emptied and removed after the test."""
    with scratch_cgroup() as directory:
        yield directory
