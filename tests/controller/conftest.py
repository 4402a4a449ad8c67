"""Fixtures for controller tests: stores (every backend runs the same suite) and specs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backstop.controller.store import Store, open_store
from backstop.core.models import (
    Action,
    CorrectionSpec,
    GpuSample,
    NodeInfo,
    Scope,
)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store of each backend (PostgreSQL: a new database per test)."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_database"))
    return f"sqlite:///{tmp_path / 'backstop.db'}"


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """An open, empty store of each backend."""
    opened = open_store(store_url)
    yield opened
    opened.close()


def node(node_id: str = "n1", gpus: int = 1) -> NodeInfo:
    return NodeInfo(
        node_id=node_id,
        hostname=f"{node_id}.example",
        agent_version="0.1.0",
        labels={"pool": "a"},
        gpus=tuple(GpuSample(i, f"GPU-{node_id}-{i}", "NVIDIA H100") for i in range(gpus)),
        nvml_available=True,
    )


def spec(
    correction_id: str = "cor-1",
    action: Action = Action.PAUSE,
    scope: Scope | None = None,
    expires_at_s: float = 10_000.0,
) -> CorrectionSpec:
    return CorrectionSpec(
        correction_id=correction_id,
        action=action,
        scope=scope or Scope(all=True),
        reason="test",
        issuer="alice",
        created_at_s=1.0,
        expires_at_s=expires_at_s,
    )
