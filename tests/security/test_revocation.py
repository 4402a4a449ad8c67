"""Revocation that outlives the controller's store: the CA's signed revocation list, end to end.

Real processes throughout: a CA and certificates from `backstop pki`, a controller holding the
CA key for enrolment, an agent enrolled with a one-time token, the CLI run as each person.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import LocalCluster, wait_for
from tests.support.secure import SecureSetup, backstop, tampered_crl

pytestmark = pytest.mark.e2e

ROLES = {"admin": "admin", "vic": "viewer", "walt": "viewer"}


@dataclass
class Enrolled:
    cluster: LocalCluster
    setup: SecureSetup
    tmp: Path

    def cli(self, who: str, *args: str) -> Any:
        return self.cluster.cli(*args, env=self.setup.people[who].env())

    def audit(self) -> list[dict[str, Any]]:
        result = self.cli("vic", "audit", "export")
        assert result.code == 0, result.err
        return [json.loads(line) for line in result.out.splitlines()]

    def connected(self, node: str) -> bool:
        result = self.cli("vic", "nodes", "-o", "json")
        assert result.code == 0, result.err
        return any(n["node_id"] == node and n.get("connected") for n in result.json())

    def enrol_and_run(self, node: str) -> Path:
        token = self.cli("admin", "pki", "token", "--node", node)
        assert token.code == 0, token.err
        state = self.tmp / f"state-{node}"
        backstop(
            "agent", "enroll", "--enrol-address", self.cluster.enrol_address,
            "--token", token.out.split()[0], "--ca", str(self.setup.ca_dir / "ca.crt"),
            "--node-id", node, "--state-dir", str(state),
        )  # fmt: skip
        self.cluster.start_agent(node, None, "--trust-policy", str(self.setup.policy))
        return state


@pytest.fixture
def enrolled(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Enrolled]:
    setup = SecureSetup(tmp_path / "pki", quorum={}).create(ROLES)
    cluster = LocalCluster(tmp_path, insecure=False)
    try:
        cluster.start_controller("127.0.0.1:0", *setup.controller_args())
        yield Enrolled(cluster, setup, tmp_path)
    finally:
        cluster.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(cluster.logs())


def _refusals(enrolled: Enrolled, action: str, subject: str) -> list[dict[str, Any]]:
    return [
        e
        for e in enrolled.audit()
        if e["action"] == action
        and e["subject"] == subject
        and "revocation list" in str(e["details"].get("reason", ""))
    ]


def test_a_revoked_node_stays_refused_after_the_store_is_lost(enrolled: Enrolled) -> None:
    enrolled.enrol_and_run("node-a")
    wait_for(lambda: enrolled.connected("node-a"), 30, "node-a to connect")
    revoked = enrolled.cli(
        "admin", "pki", "revoke", "--node", "node-a", "--reason", "stolen", "-o", "json"
    )
    assert revoked.code == 0, revoked.err
    assert revoked.json() == {
        "apiVersion": "backstop.io/v1",
        "kind": "Revocation",
        "node_id": "node-a",
        "certificates_revoked": 1,
    }
    assert (enrolled.setup.controller_tls / "crl.pem").is_file()  # beside the CA key
    wait_for(lambda: not enrolled.connected("node-a"), 20, "node-a's stream to close")

    address = enrolled.cluster.address
    enrolled.cluster.kill_controller()
    for leftover in enrolled.tmp.glob("backstop.db*"):  # the store is lost
        leftover.unlink()
    enrolled.cluster.start_controller(address, *enrolled.setup.controller_args())

    refused = wait_for(
        lambda: _refusals(enrolled, "agent.refused", "node-a") or None, 30, "node-a refused"
    )
    assert refused[0]["actor"] == "node-a"
    assert not enrolled.connected("node-a")
    assert "node.revoke" not in {e["action"] for e in enrolled.audit()}  # the new store's chain


def test_a_revoked_persons_certificate_is_refused(enrolled: Enrolled) -> None:
    assert enrolled.cli("walt", "nodes").code == 0
    tls = enrolled.setup.controller_tls  # the controller holds the CA key: revoke there
    walt = enrolled.setup.people["walt"].tls_dir / "client.crt"
    backstop("pki", "revoke", "--dir", str(tls), "--cert", str(walt), "--reason", "left")
    refused = enrolled.cli("walt", "nodes")
    assert refused.code == 6, refused.err + refused.out
    assert "revocation list" in refused.err
    assert _refusals(enrolled, "request.refused", "listing nodes")
    assert enrolled.cli("vic", "nodes").code == 0  # everyone else is unaffected


def test_an_agent_refuses_a_revoked_controller_certificate(enrolled: Enrolled) -> None:
    setup = enrolled.setup
    controller_cert = setup.controller_tls / "controller.crt"
    backstop(
        "pki", "revoke", "--dir", str(setup.ca_dir), "--cert", str(controller_cert),
        "--reason", "controller key stolen",
    )  # fmt: skip
    token = enrolled.cli("admin", "pki", "token", "--node", "node-b")
    state = enrolled.tmp / "state-node-b"
    backstop(
        "agent", "enroll", "--enrol-address", enrolled.cluster.enrol_address,
        "--token", token.out.split()[0], "--ca", str(setup.ca_dir / "ca.crt"),
        "--node-id", "node-b", "--state-dir", str(state),
    )  # fmt: skip
    shutil.copy2(setup.ca_dir / "crl.pem", state / "tls" / "crl.pem")  # the runbook's copy
    agent = enrolled.cluster.start_agent("node-b", None, "--trust-policy", str(setup.policy))
    log = enrolled.tmp / "agent-node-b.log"

    def refused() -> bool:
        return "controller refused" in log.read_text() and "revocation list" in log.read_text()

    wait_for(refused, 30, "node-b to refuse the revoked controller certificate")
    assert agent.poll() is None  # it keeps trying (a new list may come), it does not crash


def test_a_tampered_revocation_list_stops_the_daemons_at_start(
    enrolled: Enrolled, tmp_path: Path
) -> None:
    setup = enrolled.setup
    backstop(
        "pki", "revoke", "--dir", str(setup.ca_dir), "--serial", "abc123", "--reason", "test",
    )  # fmt: skip
    bad = tmp_path / "tampered-crl.pem"
    bad.write_bytes(tampered_crl((setup.ca_dir / "crl.pem").read_bytes()))
    controller = subprocess.run(
        [
            sys.executable, "-m", "backstop", "controller", "serve", "--listen", "127.0.0.1:0",
            "--store", f"sqlite:///{tmp_path / 'other.db'}", "--tls-dir",
            str(setup.controller_tls), "--trust-policy", str(setup.policy), "--crl", str(bad),
        ],
        capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert controller.returncode != 0
    assert "NOT signed by the CA" in controller.stderr
    assert str(bad) in controller.stderr
    assert "Traceback" not in controller.stderr

    tls = tmp_path / "agent-tls"
    backstop(
        "pki", "issue", "--dir", str(setup.ca_dir), "--name", "node-c", "--role", "agent",
        "--out", str(tls),
    )  # fmt: skip
    shutil.copy2(bad, tls / "crl.pem")
    agent = subprocess.run(
        [
            sys.executable, "-m", "backstop", "--controller", enrolled.cluster.address,
            "agent", "run", "--node-id", "node-c", "--state-dir", str(tmp_path / "state-c"),
            "--tls-dir", str(tls), "--trust-policy", str(setup.policy),
        ],
        capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert agent.returncode != 0
    assert "NOT signed by the CA" in agent.stderr
    assert "Traceback" not in agent.stderr
