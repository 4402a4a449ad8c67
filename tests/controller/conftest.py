"""Fixtures for controller tests: stores (every backend runs the same suite) and specs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backstop.controller.corrections import CorrectionsEngine
from backstop.controller.store import Store, open_store
from backstop.core.models import (
    Action,
    AuditHead,
    CorrectionSpec,
    GpuSample,
    NodeInfo,
    PolicyAuthority,
    Scope,
    SignatureRecord,
)
from backstop.core.settings import ControllerSettings
from backstop.wire import correction_convert


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


class RecordingLink:
    """An agent stream's outgoing side that records what it was sent."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.sent: list[tuple[int, CorrectionSpec]] = []
        self.heads: list[AuditHead] = []
        self.authorities: list[PolicyAuthority | None] = []
        self.closed = ""

    def send_command(
        self,
        sequence: int,
        spec_bytes: bytes,
        signatures: tuple[SignatureRecord, ...],
        audit_head: AuditHead,
        authority: PolicyAuthority | None = None,
    ) -> None:
        self.sent.append((sequence, correction_convert.spec_from_bytes(spec_bytes)))
        self.heads.append(audit_head)
        self.authorities.append(authority)

    def close(self, reason: str) -> None:
        self.closed = reason


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def engine(store: Store, clock: Clock) -> CorrectionsEngine:
    for n in ("n1", "n2", "n3"):
        store.upsert_node(node(n), clock.now)
    return CorrectionsEngine(store, ControllerSettings(ack_timeout_s=5.0), clock=clock)
