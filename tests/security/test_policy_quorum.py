"""Policies on a secure controller: applying a correcting policy needs what issuing its action
by hand needs (role, the issuer's signature over the file's exact bytes, the action's quorum),
and replacing or deleting one needs the quorum of undoing it. Every step is audited."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backstop.core.policies import deletion_statement, digest_of
from tests.support.cluster import CliResult, LocalCluster
from tests.support.secure import SecureSetup

pytestmark = pytest.mark.e2e

ROLES = {"alice": "operator", "bob": "approver", "carol": "approver", "vic": "viewer"}

WATCH = b"""name: watch-known-model
description: weights reported in incident 4411
match:
  model_id: "0123456789abcdef"
action: alert
severity: critical
"""
STOP = b"""name: stop-known-model
match:
  model_id: "0123456789abcdef"
action: terminate   # needs two approvers by hand, so here too
params: {grace_s: 5}
"""


@dataclass
class Policies:
    cluster: LocalCluster
    setup: SecureSetup
    files: Path

    def cli(self, who: str, *args: str, **env: str) -> CliResult:
        return self.cluster.cli(*args, env={**self.setup.people[who].env(), **env})

    def file(self, name: str, data: bytes) -> str:
        path = self.files / name
        path.write_bytes(data)
        return str(path)

    def versions(self, name: str) -> list[dict[str, object]]:
        shown = self.cli("vic", "policy", "show", name, "--history", "-o", "json")
        assert shown.code == 0, shown.err
        versions: list[dict[str, object]] = shown.json()["versions"]
        return versions

    def audit(self) -> list[dict[str, object]]:
        result = self.cli("vic", "audit", "export")
        assert result.code == 0, result.err
        return [json.loads(line) for line in result.out.splitlines()]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SecureSetup:
    root = tmp_path_factory.mktemp("pki")
    return SecureSetup(root, quorum={"terminate": 2}).create(ROLES)


@pytest.fixture
def policies(tmp_path: Path, pki: SecureSetup) -> Iterator[Policies]:
    cluster = LocalCluster(tmp_path, insecure=False)
    try:
        cluster.start_controller("127.0.0.1:0", *pki.controller_args())
        yield Policies(cluster, pki, tmp_path)
    finally:
        cluster.stop()


def test_an_alert_policy_is_active_once_its_issuer_signed(policies: Policies) -> None:
    applied = policies.cli("alice", "policy", "apply", policies.file("w.yaml", WATCH), "-o", "json")
    assert applied.code == 0, applied.err
    version = applied.json()
    assert (version["name"], version["version"], version["state"]) == (
        "watch-known-model",
        1,
        "active",
    )
    assert version["document"] == WATCH.decode()  # the exact bytes, comments and all
    assert version["digest"] == digest_of(WATCH)
    assert [s["signer"] for s in version["signatures"]] == ["alice"]
    again = policies.cli("alice", "policy", "apply", policies.file("w.yaml", WATCH))
    assert "unchanged" in again.out
    assert len(policies.versions("watch-known-model")) == 1

    viewer = policies.cli("vic", "policy", "apply", policies.file("w2.yaml", WATCH + b"#\n"))
    assert viewer.code == 6, viewer.err
    unsigned = policies.cli(
        "alice", "policy", "apply", policies.file("w3.yaml", WATCH + b"#\n"), BACKSTOP_KEY=""
    )
    assert unsigned.code == 6, unsigned.err
    assert len(policies.versions("watch-known-model")) == 1
    refused = [e for e in policies.audit() if e["action"] == "request.refused"]
    refused += [e for e in policies.audit() if e["action"] == "policy.refused"]
    assert {e["actor"] for e in refused} >= {"vic", "alice"}


def test_a_correcting_policy_waits_for_its_quorum(policies: Policies) -> None:
    applied = policies.cli("alice", "policy", "apply", policies.file("s.yaml", STOP), "-o", "json")
    assert applied.code == 0, applied.err
    assert applied.json()["state"] == "proposed"
    assert "needs 2 approvals" in applied.json()["approval"]
    listed = policies.cli("vic", "policy", "list")
    assert "proposed" in listed.out
    assert "stop-known-model" in listed.out

    first = policies.cli("bob", "policy", "approve", "stop-known-model", "--yes", "-o", "json")
    assert first.code == 0, first.err
    assert first.json()["state"] == "proposed"
    self_approval = policies.cli("alice", "policy", "approve", "stop-known-model", "--yes")
    assert self_approval.code == 6  # an operator is not an approver; nor is the issuer
    second = policies.cli("carol", "policy", "approve", "stop-known-model", "--yes", "-o", "json")
    assert second.json()["state"] == "active"
    assert [s["signer"] for s in second.json()["signatures"]] == ["alice", "bob", "carol"]

    # undoing it needs the same two approvers: alice's deletion is only proposed
    deleted = policies.cli("alice", "policy", "delete", "stop-known-model", "-o", "json")
    assert deleted.code == 0, deleted.err
    deletion = deleted.json()
    assert (deletion["action"], deletion["state"]) == ("delete", "proposed")
    active = policies.versions("stop-known-model")[0]
    assert active["state"] == "active"  # still in force meanwhile
    statement = deletion_statement("stop-known-model", str(active["digest"]))
    assert deletion["document"] == statement.decode()
    # so is a replacement that weakens it
    weaker = STOP.replace(b"action: terminate", b"action: alert").replace(
        b"params: {grace_s: 5}\n", b""
    )
    replaced = policies.cli(
        "alice", "policy", "apply", policies.file("s2.yaml", weaker), "-o", "json"
    )
    assert replaced.json()["state"] == "proposed"

    for who in ("bob", "carol"):
        approved = policies.cli(
            who, "policy", "approve", "stop-known-model", "--version", "2", "--yes"
        )
        assert approved.code == 0, approved.err
    states = [
        (v["version"], v["action"], v["state"]) for v in policies.versions("stop-known-model")
    ]
    assert states == [
        (1, "terminate", "superseded"),
        (2, "delete", "active"),
        (3, "alert", "withdrawn"),  # made against version 1, which is gone
    ]
    gone = policies.cli("vic", "policy", "show", "stop-known-model")
    assert gone.code == 0
    assert "deletion of policy" in gone.out
    events = [(e["actor"], e["action"]) for e in policies.audit() if e["subject"] != "listing"]
    assert ("alice", "policy.apply") in events
    assert ("bob", "policy.approve") in events
    assert ("carol", "policy.activate") in events
    assert ("alice", "policy.delete") in events


def test_a_bad_policy_file_is_refused_with_its_line_and_changes_nothing(
    policies: Policies,
) -> None:
    bad = WATCH.replace(b"severity: critical", b"severity: critical\nacton: pause")
    refused = policies.cli("alice", "policy", "apply", policies.file("bad.yaml", bad))
    assert refused.code == 2
    assert "bad.yaml:7:" in refused.err
    assert "acton" in refused.err
    listed = policies.cli("vic", "policy", "list", "-o", "json")
    assert listed.json() == []
