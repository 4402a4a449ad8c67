"""Fixtures for the alert sinks: a real Alertmanager (built once, see
tests.support.prometheus_builds) and recording HTTP receivers (tests.support.alert_receivers)."""

from __future__ import annotations

from dataclasses import replace

from backstop.core.alerts import AlertSpec
from tests.support.alert_fixtures import alertmanager, prebuild_alertmanager, receiver

pytest_collection_finish = prebuild_alertmanager
__all__ = ["alert_spec", "alertmanager", "pytest_collection_finish", "receiver"]


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
