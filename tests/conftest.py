"""Suite-wide hooks and fixtures.

- Each test's outcome is visible to fixtures (for log dumps on failure).
- Each test's CLI runs keep their witnessed audit heads in a directory of that test
  (``XDG_STATE_HOME``), never in the home directory: a head seen from one test's controller
  must not be held against another's that reuses its port.
- One PostgreSQL server per session serves every directory's tests (``postgres_database`` gives
  each test its own empty database); it is installed before the first test that needs it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.postgres import postgres_database, postgres_dsn, postgres_server
from tests.support.postgres import preinstall_postgres as pytest_collection_finish

__all__ = [
    "postgres_database",
    "postgres_dsn",
    "postgres_server",
    "pytest_collection_finish",
    "pytest_runtest_makereport",
]


@pytest.fixture(autouse=True)
def _cli_state_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("xdg-state")))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
