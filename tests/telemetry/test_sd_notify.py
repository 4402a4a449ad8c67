"""The notify protocol on its own: addresses, the watchdog's interval, datagrams, no-ops."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from backstop.telemetry import sd_notify
from backstop.telemetry.sd_notify import Notifier
from tests.support.cluster import wait_for
from tests.support.notify_socket import NotifySocket


def test_without_a_socket_nothing_is_sent() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.ready("serving") is False
    assert notifier.stopping("stopping") is False
    asyncio.run(asyncio.wait_for(notifier.keep_alive(lambda: "x"), 1))  # returns at once


def test_the_watchdog_interval_is_for_this_process_only() -> None:
    me = str(os.getpid())
    assert Notifier({"WATCHDOG_USEC": "3000000"}).watchdog_s == 3.0
    assert Notifier({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": me}).watchdog_s == 3.0
    assert Notifier({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}).watchdog_s is None
    assert Notifier({"WATCHDOG_USEC": "0"}).watchdog_s is None
    assert Notifier({"WATCHDOG_USEC": "soon"}).watchdog_s is None


def test_datagrams_reach_a_path_and_an_abstract_name(tmp_path: Path) -> None:
    for where in (tmp_path / "notify", None):
        with NotifySocket(where).start() as notify:
            notifier = Notifier({"NOTIFY_SOCKET": notify.name})
            assert notifier.ready("serving on\n127.0.0.1:7443")  # one line, always
            ready = notify.wait_for("READY", "1", 5)
            assert ready.fields["STATUS"] == "serving on 127.0.0.1:7443"


def test_a_relative_socket_name_is_ignored() -> None:
    assert not Notifier({"NOTIFY_SOCKET": "relative/path"}).enabled


def test_a_gone_socket_does_not_stop_the_daemon(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody")})
    assert notifier.ready("serving") is False
    assert notifier.stopping("stopping") is False


def test_serving_pings_and_sends_a_changed_status(tmp_path: Path) -> None:
    state = ["waiting for controller"]

    async def run() -> None:
        notifier = Notifier({"NOTIFY_SOCKET": notify.name, "WATCHDOG_USEC": "100000"})
        async with sd_notify.serving(lambda: state[0], notifier=notifier):
            await asyncio.sleep(0.3)
            state[0] = "connected to controller"
            await asyncio.sleep(0.3)

    with NotifySocket(tmp_path / "notify").start() as notify:
        asyncio.run(run())
        wait_for(lambda: len(notify.with_field("WATCHDOG", "1")) >= 5, 5, "pings")
        statuses = [d.fields["STATUS"] for d in notify.with_field("STATUS")]
        assert statuses == ["waiting for controller", "connected to controller"]
        assert notify.with_field("READY", "1")[0].fields["STATUS"] == "waiting for controller"
