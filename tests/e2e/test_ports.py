"""Daemons that cannot have their ports fail at start, saying which address and why.

Real processes: a first controller (or a plain socket) holds the port; a second ``backstop``
daemon is started on it and must exit non-zero with a message, not share the port and not
print a traceback.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cluster import LocalCluster
from tests.support.secure import SecureSetup

pytestmark = pytest.mark.e2e


@pytest.fixture
def held_port() -> Iterator[str]:
    """A loopback port held by a plain listening socket."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def _backstop(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, "-m", "backstop", *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"backstop {' '.join(args)} started on a busy port") from exc


def _refused(result: subprocess.CompletedProcess[str], what: str, address: str) -> None:
    assert result.returncode != 0, result.stderr
    assert f"cannot listen for {what} on {address}" in result.stderr, result.stderr
    assert "already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_second_controller_on_a_busy_port_fails_at_start(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    address = cluster.start_controller("127.0.0.1:0")
    second = _backstop(
        "--insecure", "controller", "serve", "--listen", address,
        "--store", f"sqlite:///{tmp_path / 'second.db'}",
    )  # fmt: skip
    _refused(second, "agents and the CLI", address)
    assert cluster.controller is not None
    assert cluster.controller.poll() is None
    assert cluster.cli("nodes").code == 0  # the first one still serves


def test_a_busy_metrics_port_stops_the_controller_and_the_agent(
    held_port: str, tmp_path: Path
) -> None:
    controller = _backstop(
        "--insecure", "controller", "serve", "--listen", "127.0.0.1:0",
        "--store", f"sqlite:///{tmp_path / 'c.db'}", "--metrics-listen", held_port,
    )  # fmt: skip
    _refused(controller, "/metrics (--metrics-listen)", held_port)
    agent = _backstop(
        "--insecure", "--controller", "127.0.0.1:9", "agent", "run",
        "--state-dir", str(tmp_path / "agent"), "--metrics-listen", held_port,
    )  # fmt: skip
    _refused(agent, "/metrics (--metrics-listen)", held_port)


def test_a_busy_enrolment_port_stops_the_controller(held_port: str, tmp_path: Path) -> None:
    setup = SecureSetup(tmp_path / "pki", quorum={}).create({"admin": "admin"})
    controller = _backstop(
        "controller", "serve", "--listen", "127.0.0.1:0",
        "--store", f"sqlite:///{tmp_path / 'c.db'}",
        "--tls-dir", str(setup.controller_tls), "--trust-policy", str(setup.policy),
        "--enrol-listen", held_port,
    )  # fmt: skip
    _refused(controller, "enrolment", held_port)
