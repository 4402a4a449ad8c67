"""Fixtures for the alert sinks: a real Alertmanager (built once, see
tests.support.prometheus_builds) and recording HTTP receivers (tests.support.alert_receivers)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from backstop.core.alerts import AlertSpec
from tests.support.alert_receivers import Alertmanager, Receiver, run_alertmanager
from tests.support.prometheus_builds import alertmanager_binary, prebuild


def alert_spec(workload_id: str = "wl-a", **changes: object) -> AlertSpec:
    """A policy's alert about one workload on node ``n1``; ``changes`` replace fields."""
    spec = AlertSpec(
        dedup_key=f"gpu-memory/{workload_id}",
        policy="gpu-memory",
        policy_version=2,
        severity="critical",
        summary="GPU memory above 95%",
        node_id="n1",
        workload_id=workload_id,
        details={"memory_pct": 97.0},
    )
    return replace(spec, **changes)  # type: ignore[arg-type]


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build Alertmanager before the first test that needs it, outside per-test timeouts."""
    prebuild(session, "alertmanager", alertmanager_binary)


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Alertmanager]:
    """Alertmanager at the pinned version; skips the test where Go cannot build it."""
    try:
        binary = alertmanager_binary()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    with run_alertmanager(binary, tmp_path) as running:
        yield running


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver, bound but refusing connections until ``listen()``."""
    made = Receiver()
    yield made
    made.close()
