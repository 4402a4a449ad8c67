"""The controller's /healthz: 200 "ok" while the store answers and the loop runs, else 503
with the reason."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from backstop.controller.liveness import Liveness
from backstop.controller.server import ControllerServer
from backstop.controller.store import open_store
from backstop.core.errors import StoreError
from backstop.core.settings import ControllerSettings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _beaten(liveness: Liveness) -> None:
    """Run one beat of the loop's stamp."""

    async def once() -> None:
        task = asyncio.create_task(liveness.beat())
        await asyncio.sleep(0)
        task.cancel()

    asyncio.run(once())


def test_healthy_while_the_loop_beats_and_the_store_answers() -> None:
    clock = Clock()
    liveness = Liveness(lambda: 7, clock=clock)
    assert liveness.check() == (False, "event loop not running yet")
    _beaten(liveness)
    assert liveness.check() == (True, "ok")
    clock.now += 4.0
    assert liveness.check() == (True, "ok")
    clock.now += 2.0
    assert liveness.check() == (False, "event loop unresponsive for 6.0 s")
    _beaten(liveness)
    assert liveness.check() == (True, "ok")
    liveness.close()


def test_a_failing_store_is_the_reason() -> None:
    def broken() -> int:
        raise StoreError("store query failed: disk I/O error")

    liveness = Liveness(broken, clock=Clock())
    _beaten(liveness)
    assert liveness.check() == (False, "store unreachable: store query failed: disk I/O error")
    liveness.close()


def test_a_hung_store_times_out_and_probes_do_not_pile_up() -> None:
    release = threading.Event()
    calls: list[int] = []

    def hung() -> int:
        calls.append(1)
        release.wait(10)
        return 1

    clock = Clock()
    liveness = Liveness(hung, store_timeout_s=0.1, clock=clock)
    _beaten(liveness)
    assert liveness.check() == (False, "store unreachable: no answer within 0.1 s")
    clock.now += 1.0
    assert liveness.check() == (False, "store unreachable: a query has been waiting 1.0 s")
    assert len(calls) == 1
    release.set()
    deadline = time.monotonic() + 5  # the stuck query returns; the next probe asks again
    while liveness.check() != (True, "ok") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert liveness.check() == (True, "ok")
    assert len(calls) > 1
    liveness.close()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_healthz_reports_the_store_and_livez_the_loop_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = ControllerSettings(
        listen="127.0.0.1:0",
        insecure=True,
        store_url=f"sqlite:///{tmp_path}/d",
        metrics_listen="127.0.0.1:0",
    )

    store = open_store(settings.store_url)
    reachable = store.schema_version
    lost = threading.Event()

    def schema_version() -> int:
        if lost.is_set():
            raise StoreError("cannot reach the database")
        return reachable()

    monkeypatch.setattr(store, "schema_version", schema_version)

    async def scenario() -> list[tuple[int, str]]:
        server = ControllerServer(settings, store)
        await server.start()
        assert server._telemetry is not None
        base = f"http://127.0.0.1:{server._telemetry.port}"
        try:
            await asyncio.sleep(0.1)  # the first beat
            answers = [await asyncio.to_thread(_get, base + "/healthz")]
            lost.set()
            answers.append(await asyncio.to_thread(_get, base + "/healthz"))
            answers.append(await asyncio.to_thread(_get, base + "/livez"))  # the loop alone
            return answers
        finally:
            await server.stop(0)

    assert asyncio.run(scenario()) == [
        (200, "ok\n"),
        (503, "store unreachable: cannot reach the database\n"),
        (200, "ok\n"),  # liveness: a store outage is no reason to restart the controller
    ]
