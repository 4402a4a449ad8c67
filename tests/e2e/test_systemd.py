"""Daemons under systemd: the notify protocol, and log lines an operator can rely on.

Real processes with ``NOTIFY_SOCKET`` pointing at a datagram socket the test binds: READY=1 once
the daemon serves, WATCHDOG=1 at half of ``WATCHDOG_USEC``, STOPPING=1 at SIGTERM; every JSON
log line stamped in RFC 3339 (UTC), a correction's lines with issuer, reason and outcome, and a
last line saying what stopped and why.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from backstop.simgpu import FakeNvml, default_gpus, idle_unless_listed
from tests.support.cluster import LocalCluster
from tests.support.moto_server import CREDENTIALS, REGION, MotoServer, moto, moto_process
from tests.support.notify_socket import NotifySocket

pytestmark = pytest.mark.e2e
__all__ = ["moto", "moto_process"]

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _entries(log: Path) -> list[dict[str, Any]]:
    lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
    return [json.loads(line) for line in lines]


def _check_stamps(entries: list[dict[str, Any]]) -> None:
    assert entries
    for entry in entries:
        assert RFC3339_UTC.match(entry["ts"]), entry
        stamp = datetime.fromisoformat(entry["ts"])
        assert stamp.utcoffset() == UTC.utcoffset(None)
        assert abs((datetime.now(UTC) - stamp).total_seconds()) < 300


def test_controller_ready_watchdog_stopping_and_last_line(
    cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ready_file = tmp_path / "controller.addr"
    with NotifySocket(on_ready=ready_file.exists).start() as notify:  # an abstract name ("@...")
        monkeypatch.setenv("NOTIFY_SOCKET", notify.name)
        monkeypatch.setenv("WATCHDOG_USEC", "400000")
        address = cluster.start_controller("127.0.0.1:0")
        monkeypatch.delenv("NOTIFY_SOCKET")
        ready = notify.wait_for("READY", "1")
        assert ready.noted is True  # bound and started: the address was written before
        assert ready.fields["STATUS"] == f"serving on {address}"
        cluster.wait_while_running("controller", lambda: len(notify.with_field("WATCHDOG")) > 6, 10)
        pings = [d.at for d in notify.with_field("WATCHDOG", "1")]
        assert all(p > ready.at for p in pings)
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert 0.15 < statistics.median(gaps) < 0.35, gaps  # half of 0.4 s
        cluster.signal_controller("controller", signal.SIGTERM)
        assert cluster.controllers["controller"].wait(15) == 0
        stopping = notify.wait_for("STOPPING", "1", 5)
        assert stopping.fields["STATUS"] == "stopping on SIGTERM"
    entries = _entries(tmp_path / "controller.log")
    _check_stamps(entries)
    last = entries[-1]
    assert (last["msg"], last["daemon"], last["why"]) == ("stopped", "controller", "signal")
    assert last["signal"] == "SIGTERM"


def test_agent_ready_once_connected_and_corrections_logged(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    cluster.start_controller()
    gpu = FakeNvml(tmp_path / "gpu")
    gpu.write(idle_unless_listed(default_gpus(1), []))  # no unattributed use either
    with NotifySocket(tmp_path / "notify").start() as notify:  # a path
        env = gpu.env({**os.environ, "NOTIFY_SOCKET": notify.name})
        # a prefix nothing lives under: no process on this host is in the correction's scope
        agent = cluster.start_agent("node-s", env, "--cgroup-prefix", "/backstop-none-here")
        ready = notify.wait_for("READY", "1")
        assert ready.fields["STATUS"] == f"connected to controller {cluster.address}; 1 GPUs"
        assert not notify.with_field("WATCHDOG")  # no WATCHDOG_USEC: no pings
        paused = cluster.cli("pause", "--node", "node-s", "--reason", "log check", "--wait")
        assert paused.code == 0, paused.err
        created = cluster.logged("controller", "correction created")
        applied = cluster.logged("agent-node-s", "correction applied")
        for entry, outcome in ((created, "admitted"), (applied, "applied")):
            assert (entry["issuer"], entry["reason"]) == ("e2e", "log check"), entry
            assert entry["outcome"] == outcome
            assert entry["correction_id"] == paused.out.split()[0]
        os.killpg(agent.pid, signal.SIGTERM)
        assert agent.wait(15) == 0
        assert notify.wait_for("STOPPING", "1", 5).fields["STATUS"] == "stopping on SIGTERM"
    entries = _entries(tmp_path / "agent-node-s.log")
    _check_stamps(entries)
    assert (entries[-1]["msg"], entries[-1]["daemon"], entries[-1]["signal"]) == (
        "stopped",
        "agent",
        "SIGTERM",
    )


def test_cloud_agent_ready_once_connected(
    cluster: LocalCluster, moto: MotoServer, tmp_path: Path
) -> None:
    cluster.start_controller()
    with NotifySocket(tmp_path / "notify").start() as notify:
        env = {**os.environ, **CREDENTIALS, "NOTIFY_SOCKET": notify.name}
        agent = cluster.start_cloud_agent("aws", moto.url, "--region", REGION, env=env)
        ready = notify.wait_for("READY", "1")
        assert ready.fields["STATUS"] == f"connected to controller {cluster.address}; aws account"
        os.killpg(agent.pid, signal.SIGTERM)
        assert agent.wait(15) == 0
        assert notify.wait_for("STOPPING", "1", 5).fields["STATUS"] == "stopping on SIGTERM"
