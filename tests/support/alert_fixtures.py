"""The alert receivers as pytest fixtures, for every test directory that needs them: a real
Alertmanager (built once, see tests.support.prometheus_builds) and a recording webhook
receiver (tests.support.alert_receivers). A conftest imports them and sets
``pytest_collection_finish = prebuild_alertmanager``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.alert_receivers import Alertmanager, Receiver, run_alertmanager
from tests.support.prometheus_builds import alertmanager_binary, prebuild


def prebuild_alertmanager(session: pytest.Session) -> None:
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
