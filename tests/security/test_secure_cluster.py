"""A secured controller and an enrolled agent, attacked through every door.

Everything is real: certificates from `backstop pki`, Ed25519 keys from `backstop keys`, a
trust policy with terminate needing two approvals, an agent enrolled with a one-time token,
a model server as the workload, and the CLI run as each person. Each refused attempt must
change nothing and leave its refusal in the audit chain.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from backstop.api.v1 import control_pb2, control_pb2_grpc, types_pb2
from backstop.core.ids import new_correction_id
from backstop.core.models import Action, CorrectionSpec, Scope
from backstop.core.times import rfc3339
from backstop.security.keys import generate_key, load_private
from backstop.security.quorum import sign_correction
from backstop.security.tls import channel_credentials
from backstop.wire import correction_convert
from tests.e2e.conftest import start_model_in_cgroup
from tests.support.cgroups import scratch_cgroup
from tests.support.cluster import LocalCluster, ModelServer, proc_state, tree, wait_for
from tests.support.secure import Person, SecureSetup, backstop

pytestmark = pytest.mark.e2e

ROLES = {
    "admin": "admin",
    "alice": "operator",
    "bob": "approver",
    "carol": "approver",
    "vic": "viewer",
}


@dataclass
class Secured:
    cluster: LocalCluster
    setup: SecureSetup
    model: ModelServer
    node: str

    def person(self, name: str) -> Person:
        return self.setup.people[name]

    def cli(self, who: str, *args: str):  # type: ignore[no-untyped-def]
        return self.cluster.cli(*args, env=self.person(who).env())

    def audit_actions(self) -> list[tuple[str, str, str]]:
        result = self.cli("vic", "audit", "export")
        assert result.code == 0, result.err
        entries = [json.loads(line) for line in result.out.splitlines()]
        return [(e["actor"], e["action"], e["subject"]) for e in entries]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SecureSetup:
    root = tmp_path_factory.mktemp("pki")
    return SecureSetup(root, quorum={"terminate": 2, "shutdown": 1}).create(ROLES)


@pytest.fixture
def secured(tmp_path: Path, pki: SecureSetup) -> Iterator[Secured]:
    setup = pki
    cluster = LocalCluster(tmp_path, insecure=False)
    with scratch_cgroup("backstop-sec") as root:
        try:
            cluster.start_controller("127.0.0.1:0", *setup.controller_args())
            assert cluster.enrol_address
            token = cluster.cli("pki", "token", "--node", "gpu-1", env=setup.people["admin"].env())
            assert token.code == 0, token.err
            state = tmp_path / "state-gpu-1"
            backstop(
                "agent", "enroll", "--enrol-address", cluster.enrol_address,
                "--token", token.out.split()[0], "--ca", str(setup.ca_dir / "ca.crt"),
                "--node-id", "gpu-1", "--state-dir", str(state),
            )  # fmt: skip
            model_cgroup = root / "gpu-1" / "model"
            model_cgroup.mkdir(parents=True)
            model = start_model_in_cgroup(cluster, "model", model_cgroup)
            cluster.start_agent(
                "gpu-1", None, "--trust-policy", str(setup.policy),
                "--cgroup-prefix", "/" + str((root / "gpu-1").relative_to(root.parent)),
            )  # fmt: skip
            secured = Secured(cluster, setup, model, "gpu-1")

            def reported() -> bool:
                result = secured.cli("vic", "workloads", "-o", "json")
                return result.code == 0 and model.pid in {w["root_pid"] for w in result.json()}

            wait_for(reported, 30, "the enrolled agent to report the model")
            yield secured
        finally:
            cluster.stop()


def _frozen(model: ModelServer) -> bool:
    return any(proc_state(p) == "T" for p in tree(model.pid)) or model.ask(timeout_s=0.5) is None


def test_signed_pause_and_resume_by_an_operator(secured: Secured) -> None:
    who = secured.cli("alice", "whoami")
    assert who.out.strip() == "alice (operator), authenticated"
    paused = secured.cli("alice", "pause", "--all", "--reason", "signed", "--yes", "--wait")
    assert paused.code == 0, paused.err + paused.out
    assert secured.model.ask(timeout_s=1.0) is None
    cid = paused.out.split()[0]
    resumed = secured.cli("alice", "resume", cid, "--wait")
    assert resumed.code == 0, resumed.err + resumed.out
    assert secured.model.ask() is not None
    actions = secured.audit_actions()
    assert ("alice", "correction.create", cid) in actions
    assert ("gpu-1", "command.ack", cid) in actions


def test_terminate_needs_two_distinct_approvers(secured: Secured) -> None:
    proposed = secured.cli(
        "alice",
        "terminate",
        "--all",
        "--grace",
        "1",
        "--reason",
        "two-person",
        "--yes",
        "-o",
        "json",
    )
    assert proposed.code == 0, proposed.err
    cid = proposed.json()["spec"]["correction_id"]
    assert proposed.json()["state"] == "proposed"
    time.sleep(1.0)
    assert secured.model.ask() is not None  # nothing dispatched yet

    assert secured.cli("bob", "approve", cid, "--yes").code == 0
    status = secured.cli("vic", "status", cid, "-o", "json").json()
    assert status["state"] == "proposed"  # one approval where two are required
    assert status["approvers"] == ["bob"]

    again = secured.cli("bob", "approve", cid, "--yes")
    assert again.code == 5
    assert "already approved" in again.err
    viewer = secured.cli("vic", "approve", cid, "--yes")
    assert viewer.code == 6
    assert "vic is a viewer" in viewer.err
    issuer = secured.cli("alice", "approve", cid, "--yes")
    assert issuer.code == 6
    assert secured.model.ask() is not None  # still nothing executed

    assert secured.cli("carol", "approve", cid, "--yes").code == 0
    wait_for(lambda: secured.model.proc.poll() is not None, 15, "the terminate to act")
    final = secured.cli("vic", "status", cid, "--watch", "-o", "json")
    assert final.json()["state"] == "completed"
    actions = secured.audit_actions()
    refused = [a for a in actions if a[1] == "approval.refused" and a[2] == cid]
    assert [a[0] for a in refused] == ["bob", "vic", "alice"]


def _signed_request(
    spec: CorrectionSpec, key_path: Path, signer: str
) -> types_pb2.SignedCorrection:
    data = correction_convert.spec_bytes(spec)
    record = sign_correction(
        load_private(key_path), data, signer=signer, role="issuer", signed_at_s=time.time()
    )
    return correction_convert.signed_correction(data, (record,))


def _stub(secured: Secured, who: str) -> tuple[grpc.Channel, control_pb2_grpc.ControlServiceStub]:
    tls = secured.person(who).tls_dir
    creds = channel_credentials(tls / "ca.crt", tls / "client.crt", tls / "client.key")
    channel = grpc.secure_channel(secured.cluster.address, creds)
    return channel, control_pb2_grpc.ControlServiceStub(channel)


def _spec(issuer: str = "alice", expires_in_s: float = 600.0) -> CorrectionSpec:
    now = time.time()
    return CorrectionSpec(
        correction_id=new_correction_id(),
        action=Action.PAUSE,
        scope=Scope(all=True),
        reason="attack",
        issuer=issuer,
        created_at_s=now,
        expires_at_s=now + expires_in_s,
    )


def test_forged_expired_and_impersonated_requests_are_refused(
    secured: Secured, tmp_path: Path
) -> None:
    channel, stub = _stub(secured, "alice")
    alice_key = secured.person("alice").key
    forged_key = tmp_path / "forged.pem"
    generate_key().save(forged_key)
    cases = {
        "forged": _signed_request(_spec(), forged_key, "alice"),  # a key not in the policy
        "expired": _signed_request(_spec(expires_in_s=-5), alice_key, "alice"),
        "impersonation": _signed_request(_spec(issuer="bob"), alice_key, "alice"),
    }
    tampered = _signed_request(_spec(), alice_key, "alice")
    tampered.spec = tampered.spec.replace(b"attack", b"attacc")  # signature no longer covers it
    cases["tampered"] = tampered
    codes = {}
    for name, signed in cases.items():
        request = control_pb2.CreateCorrectionRequest(signed=signed)
        with pytest.raises(grpc.RpcError) as err:
            stub.CreateCorrection(request, timeout=10)
        codes[name] = err.value.code()
    channel.close()
    assert codes == {
        "forged": grpc.StatusCode.PERMISSION_DENIED,
        "expired": grpc.StatusCode.INVALID_ARGUMENT,
        "impersonation": grpc.StatusCode.PERMISSION_DENIED,
        "tampered": grpc.StatusCode.PERMISSION_DENIED,
    }
    unsigned = secured.cli("alice", "--key", "", "pause", "--all", "--reason", "x", "--yes")
    assert unsigned.code == 6
    assert "must be signed" in unsigned.err
    assert secured.cli("vic", "corrections", "-o", "json").json() == []
    refusals = [a for a in secured.audit_actions() if a[1] == "correction.refused"]
    assert len(refusals) == 5
    assert secured.model.ask() is not None


def test_viewer_cannot_act_and_strangers_cannot_connect(secured: Secured) -> None:
    viewer = secured.cli("vic", "pause", "--all", "--reason", "x", "--yes")
    assert viewer.code == 6
    assert "needs the operator role" in viewer.err
    # no client certificate: the TLS handshake fails
    ca_only = channel_credentials(secured.setup.ca_dir / "ca.crt")
    channel = grpc.secure_channel(secured.cluster.address, ca_only)
    stub = control_pb2_grpc.ControlServiceStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.ListNodes(control_pb2.ListNodesRequest(), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    channel.close()
    # plaintext to the TLS port
    plain = grpc.insecure_channel(secured.cluster.address)
    with pytest.raises(grpc.RpcError) as err:
        control_pb2_grpc.ControlServiceStub(plain).ListNodes(
            control_pb2.ListNodesRequest(), timeout=5
        )
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    plain.close()
    assert secured.model.ask() is not None


def test_agents_with_a_foreign_or_wrong_certificate_are_refused(
    secured: Secured, tmp_path: Path
) -> None:
    cluster = secured.cluster
    foreign_state = tmp_path / "state-intruder"
    secured.setup.foreign_agent_tls("intruder", foreign_state)
    cluster.start_agent(
        "intruder", None, "--trust-policy", str(secured.setup.policy), "--state-dir",
        str(foreign_state),
    )  # fmt: skip
    # a real node's certificate, used to speak for another node
    stolen = tmp_path / "state-impostor"
    (stolen / "tls").mkdir(parents=True)
    for name in ("ca.crt", "node.crt", "node.key"):
        (stolen / "tls" / name).write_bytes((tmp_path / "state-gpu-1" / "tls" / name).read_bytes())
    (stolen / "tls" / "node.key").chmod(0o600)
    cluster.start_agent(
        "impostor", None, "--trust-policy", str(secured.setup.policy), "--state-dir", str(stolen)
    )

    def impostor_refused() -> bool:
        # recorded under the certificate's name, speaking for the node it claimed
        actions = secured.audit_actions()
        return ("gpu-1", "agent.refused", "impostor") in actions

    wait_for(impostor_refused, 20, "the impostor's refusal in the audit log")
    time.sleep(1.0)
    nodes = {n["node_id"] for n in secured.cli("vic", "nodes", "-o", "json").json()}
    assert nodes == {"gpu-1"}
    log = (tmp_path / "agent-intruder.log").read_text()
    assert "controller stream ended" in log


def test_revoked_node_is_cut_off_and_refused(secured: Secured) -> None:
    revoked = secured.cli("admin", "pki", "revoke", "--node", "gpu-1", "--reason", "stolen")
    assert revoked.code == 0, revoked.err

    def offline() -> bool:
        nodes = secured.cli("vic", "nodes", "-o", "json").json()
        return not nodes[0]["connected"]

    wait_for(offline, 20, "the revoked node's stream to close")
    time.sleep(2.0)  # the agent keeps retrying; each attempt is refused
    assert offline()
    assert secured.cli("alice", "pki", "revoke", "--node", "gpu-1", "--reason", "x").code == 6
    actions = secured.audit_actions()
    assert ("admin", "node.revoke", "gpu-1") in actions
    assert any(a[1] == "agent.refused" and a[0] == "gpu-1" for a in actions)


def test_enrolment_tokens_are_one_time_and_node_bound(secured: Secured, tmp_path: Path) -> None:
    token = secured.cli("admin", "pki", "token", "--node", "gpu-2").out.split()[0]
    args = [
        sys.executable, "-m", "backstop", "agent", "enroll", "--enrol-address",
        secured.cluster.enrol_address, "--ca", str(secured.setup.ca_dir / "ca.crt"),
        "--token", token,
    ]  # fmt: skip

    def enrol(node: str, state: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*args, "--node-id", node, "--state-dir", str(tmp_path / state)],
            capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip

    wrong_node = enrol("gpu-3", "s3")
    assert wrong_node.returncode == 6
    assert "enrolment refused" in wrong_node.stderr
    assert enrol("gpu-2", "s2").returncode == 0
    reused = enrol("gpu-2", "s2b")
    assert reused.returncode == 6
    assert (tmp_path / "s2" / "tls" / "node.crt").is_file()
    assert not (tmp_path / "s2b" / "tls").exists()
    operator_token = secured.cli("alice", "pki", "token", "--node", "gpu-4")
    assert operator_token.code == 6
    asked_at = time.time()
    as_json = secured.cli("admin", "pki", "token", "--node", "gpu-5", "--ttl", "600", "-o", "json")
    issued = as_json.json()
    assert (issued["kind"], issued["node_id"]) == ("EnrolmentToken", "gpu-5")
    assert asked_at + 590 <= issued["expires_at_s"] <= time.time() + 610
    assert issued["expires_at"] == rfc3339(issued["expires_at_s"])
    enrolled = subprocess.run(
        [*args[:-1], issued["token"], "--node-id", "gpu-5", "--state-dir", str(tmp_path / "s5")],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    assert enrolled.returncode == 0, enrolled.stderr  # the token printed is the one that works


def test_audit_verify_detects_edits_deletions_and_reordering(
    secured: Secured, tmp_path: Path
) -> None:
    paused = secured.cli("alice", "pause", "--all", "--reason", "audit", "--yes", "--wait")
    assert paused.code == 0
    ok = secured.cli("vic", "audit", "verify")
    assert ok.code == 0, ok.err + ok.out
    assert "intact" in ok.out
    journal = tmp_path / "state-gpu-1" / "audit.jsonl"
    assert backstop("audit", "verify", "--file", str(journal)).returncode == 0

    db = sqlite3.connect(tmp_path / "backstop.db")
    (count,) = db.execute("SELECT COUNT(*) FROM audit").fetchone()
    assert count >= 5

    def verify_controller() -> str:
        result = secured.cli("vic", "audit", "verify", "-o", "json")
        assert result.code == 1, result.out
        return str(result.json()["first_bad_seq"])

    db.execute("UPDATE audit SET details = replace(details, 'audit', 'AUDIT') WHERE seq = 3")
    db.commit()
    edited = verify_controller()
    db.execute("UPDATE audit SET details = replace(details, 'AUDIT', 'audit') WHERE seq = 3")
    db.commit()
    row = db.execute("SELECT * FROM audit WHERE seq = 4").fetchone()
    db.execute("DELETE FROM audit WHERE seq = 4")
    db.commit()
    deleted = verify_controller()
    db.execute("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
    db.execute("UPDATE audit SET seq = -1 WHERE seq = 2")
    db.execute("UPDATE audit SET seq = 2 WHERE seq = 3")
    db.execute("UPDATE audit SET seq = 3 WHERE seq = -1")
    db.commit()
    reordered = verify_controller()
    db.close()
    assert (edited, deleted, reordered) == ("3", "4", "2")

    lines = journal.read_text().splitlines()
    entry = json.loads(lines[1])
    entry["details"]["tampered"] = True
    lines[1] = json.dumps(entry)
    journal.write_text("\n".join(lines) + "\n")
    broken = subprocess.run(
        [sys.executable, "-m", "backstop", "audit", "verify", "--file", str(journal)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert broken.returncode == 1
    assert "BROKEN at entry 2" in broken.stdout
