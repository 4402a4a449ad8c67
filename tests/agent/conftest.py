"""Fixtures for agent tests: real child processes to find, and a clock the test moves."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.agent.fingerprint.children import Spawner


class FakeClock:
    """A clock that stands still until the test moves ``now``."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def spawner() -> Iterator[Spawner]:
    """Spawns real child processes; every one is killed and reaped after the test."""
    spawner = Spawner()
    yield spawner
    spawner.cleanup()
