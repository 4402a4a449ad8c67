"""The record cannot be trimmed or flooded: a secured controller, an enrolled agent, the CLI.

- A controller chain cut short, or rewritten with recomputed hashes, verifies on its own; it
  fails against the heads witnessed outside the store: the CLI's own, and each node's.
- An agent journal cut short fails against the journal head its node reported.
- A revoked certificate reconnecting as fast as it can adds a handful of entries whose counts
  add up to its attempts; every refusal names the certificate, not the address.

Node-reported heads are sent by a raw client holding the node's certificate.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from backstop.api.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    control_pb2,
    control_pb2_grpc,
    enrolment_pb2,
    enrolment_pb2_grpc,
)
from backstop.cli.heads import HeadMemory
from backstop.controller.store.sqlite import SqliteStore
from backstop.core.models import AuditHead
from backstop.security import audit
from backstop.security.audit import next_entry
from backstop.security.tls import channel_credentials
from backstop.wire import convert
from tests.controller.conftest import node
from tests.security.test_secure_cluster import Secured, pki, secured
from tests.support.secure import backstop

__all__ = ["pki", "secured"]

pytestmark = pytest.mark.e2e


def _agent_stub(secured: Secured, tls: Path) -> tuple[grpc.Channel, Any]:
    creds = channel_credentials(tls / "ca.crt", tls / "node.crt", tls / "node.key")
    channel = grpc.secure_channel(secured.cluster.address, creds)
    return channel, agent_pb2_grpc.AgentGatewayStub(channel)


def _hello(
    node_id: str, witnessed: AuditHead | None = None, journal: AuditHead | None = None
) -> agent_pb2.AgentMessage:
    msg = agent_pb2.Hello(node=convert.node_to_pb(node(node_id)))
    msg.witnessed_audit_head.CopyFrom(convert.audit_head_to_pb(witnessed or AuditHead()))
    msg.journal_head.CopyFrom(convert.audit_head_to_pb(journal or AuditHead()))
    return agent_pb2.AgentMessage(hello=msg)


def _say_hello(stub: Any, message: agent_pb2.AgentMessage) -> None:
    """One stream: the Hello goes up, the Welcome comes back (the heads are stored by then)."""
    responses = stub.Connect(iter([message]), timeout=10)
    assert next(responses).WhichOneof("body") == "welcome"
    responses.cancel()


def _enrol(secured: Secured, node_id: str, state: Path) -> Path:
    token = secured.cli("admin", "pki", "token", "--node", node_id)
    assert token.code == 0, token.err
    backstop(
        "agent", "enroll", "--enrol-address", secured.cluster.enrol_address,
        "--token", token.out.split()[0], "--ca", str(secured.setup.ca_dir / "ca.crt"),
        "--node-id", node_id, "--state-dir", str(state),
    )  # fmt: skip
    return state / "tls"


def _viewer(secured: Secured) -> tuple[grpc.Channel, Any]:
    tls = secured.person("vic").tls_dir
    creds = channel_credentials(tls / "ca.crt", tls / "client.crt", tls / "client.key")
    channel = grpc.secure_channel(secured.cluster.address, creds)
    return channel, control_pb2_grpc.ControlServiceStub(channel)


def _rewrite_tail(db_path: Path, from_seq: int) -> None:
    """Change entry ``from_seq`` and recompute every hash after it: a chain valid on its own."""
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    rows = db.execute(
        "SELECT seq, ts, actor, action, subject, details, prev_hash, hash FROM audit "
        "WHERE seq >= ? - 1 ORDER BY seq",
        (from_seq,),
    ).fetchall()
    prev = audit.AuditEntry(
        seq=rows[0][0], ts=rows[0][1], actor=rows[0][2], action=rows[0][3],
        subject=rows[0][4], details=json.loads(rows[0][5]), prev_hash=rows[0][6], hash=rows[0][7],
    )  # fmt: skip
    for seq, ts, actor, action, subject, details, _, _ in rows[1:]:
        changed = json.loads(details)
        if seq == from_seq:
            changed["forged"] = True
        prev = next_entry(prev, ts=ts, actor=actor, action=action, subject=subject, details=changed)
        assert prev.seq == seq
        db.execute(
            "UPDATE audit SET details=?, prev_hash=?, hash=? WHERE seq=?",
            (json.dumps(prev.details, sort_keys=True), prev.prev_hash, prev.hash, seq),
        )
    db.execute("COMMIT")
    db.close()


def _verify(secured: Secured, *args: str, env: dict[str, str] | None = None) -> Any:
    return secured.cluster.cli(
        "audit", "verify", *args, env={**secured.person("vic").env(), **(env or {})}
    )


def test_a_cut_or_rewritten_chain_fails_against_the_cli_and_node_witnesses(
    secured: Secured, tmp_path: Path
) -> None:
    paused = secured.cli("alice", "pause", "--all", "--reason", "witness", "--yes", "--wait")
    assert paused.code == 0, paused.err
    intact = _verify(secured)
    assert intact.code == 0, intact.out + intact.err
    assert "intact" in intact.out
    mine = HeadMemory().get(secured.cluster.address)
    assert mine.seq >= 5  # the CLI witnessed the chain it verified

    # gpu-2 witnesses the controller's head now (as an agent does from its commands)
    tls = _enrol(secured, "gpu-2", tmp_path / "state-gpu-2")
    channel, viewer = _viewer(secured)
    now = viewer.GetAuditHead(control_pb2.GetAuditHeadRequest(), timeout=10)
    assert now.seq >= mine.seq
    agent_channel, agent = _agent_stub(secured, tls)
    _say_hello(agent, _hello("gpu-2", witnessed=AuditHead(now.seq, now.hash)))
    agent_channel.close()
    nodes = {n.node_id: n for n in viewer.ListNodes(control_pb2.ListNodesRequest()).nodes}
    assert nodes["gpu-2"].witnessed_audit_head == now
    channel.close()
    assert _verify(secured).code == 0
    mine = HeadMemory().get(secured.cluster.address)  # moved on with the verified chain
    assert mine.seq == now.seq

    db_path = tmp_path / "backstop.db"
    _rewrite_tail(db_path, mine.seq - 2)
    assert audit.verify(SqliteStore(str(db_path)).list_audit()).ok  # valid on its own
    rewritten = _verify(secured)
    assert rewritten.code == 1, rewritten.out
    assert "CUT OR REWRITTEN" in rewritten.out
    assert f"witness: this CLI ({HeadMemory().path}) saw entry {mine.seq}" in rewritten.out
    assert f"witness: node gpu-2 saw entry {now.seq}" in rewritten.out
    assert "rewritten at or before" in rewritten.out

    db = sqlite3.connect(db_path)
    db.execute("DELETE FROM audit WHERE seq > ?", (mine.seq - 3,))
    db.commit()
    db.close()
    fresh = {"XDG_STATE_HOME": str(tmp_path / "another-cli")}  # only the nodes witness
    cut = _verify(secured, "-o", "json", env=fresh)
    assert cut.code == 1, cut.out
    result = json.loads(cut.out)
    assert result["first_bad_seq"] is None  # the chain itself verifies
    # gpu-1 (the real agent) witnessed the head of its pause command too
    assert set(result["witnesses"]) == {"node gpu-1", "node gpu-2"}
    (problem,) = [p for p in result["witness_problems"] if p.startswith("node gpu-2")]
    assert problem.startswith(f"node gpu-2 saw entry {now.seq}")
    assert "were removed" in problem


def test_a_trimmed_journal_fails_against_the_nodes_reported_head(
    secured: Secured, tmp_path: Path
) -> None:
    paused = secured.cli("alice", "pause", "--all", "--reason", "journal", "--yes", "--wait")
    assert paused.code == 0, paused.err
    journal = tmp_path / "state-gpu-1" / "audit.jsonl"
    entries = list(audit.read_entries(journal))
    assert len(entries) >= 2
    last = entries[-1]
    # the node reports its journal head (the real agent will; here a raw client with its key)
    channel, agent = _agent_stub(secured, tmp_path / "state-gpu-1" / "tls")
    _say_hello(agent, _hello("gpu-1", journal=AuditHead(last.seq, last.hash)))
    channel.close()
    intact = _verify(secured, "--journal", str(journal), "--node", "gpu-1")
    assert intact.code == 0, intact.out + intact.err
    assert "agrees with 1 witness" in intact.out

    lines = journal.read_bytes().splitlines(keepends=True)
    trimmed = tmp_path / "trimmed.jsonl"
    trimmed.write_bytes(b"".join(lines[:-1]))
    assert backstop("audit", "verify", "--file", str(trimmed)).returncode == 0  # alone: "intact"
    cut = _verify(secured, "--journal", str(trimmed), "--node", "gpu-1")
    assert cut.code == 1, cut.out
    assert f"the controller's record of node gpu-1's journal head saw entry {last.seq}" in cut.out
    unknown = _verify(secured, "--journal", str(journal), "--node", "gpu-9")
    assert unknown.code != 0
    assert "knows no node 'gpu-9'" in unknown.err


def _stop_controller(secured: Secured) -> list[audit.AuditEntry]:
    """Stop the controller as an operator would (SIGTERM), then read its chain."""
    secured.cluster.signal_controller("controller", signal.SIGTERM)
    proc = secured.cluster.controllers["controller"]
    assert proc.wait(timeout=30) == 0
    store = SqliteStore(str(secured.cluster.workdir / "backstop.db"))
    try:
        entries = store.list_audit()
    finally:
        store.close()
    assert audit.verify(entries).ok
    return entries


def test_a_revoked_certificate_retrying_fast_adds_a_handful_of_entries(
    secured: Secured, tmp_path: Path
) -> None:
    tls = _enrol(secured, "gpu-2", tmp_path / "state-gpu-2")
    revoked = secured.cli("admin", "pki", "revoke", "--node", "gpu-2", "--reason", "stolen")
    assert revoked.code == 0, revoked.err
    channel, agent = _agent_stub(secured, tls)
    hello = _hello("gpu-2")
    attempts = 0
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        with pytest.raises(grpc.RpcError) as err:
            next(agent.Connect(iter([hello]), timeout=10))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        attempts += 1
    channel.close()
    assert attempts >= 50  # a flood, not a few retries

    entries = [e for e in _stop_controller(secured) if e.action == "agent.refused"]
    assert 1 <= len(entries) <= 4, [e.details for e in entries]
    assert sum(e.details["count"] for e in entries) == attempts
    for entry in entries:
        assert entry.actor == "gpu-2"  # the certificate's identity
        assert entry.details["refusal"] == "revoked"
    assert entries[0].details["peer"].startswith("ipv4:127.0.0.1:")


def test_bad_enrolments_from_one_address_are_counted_not_repeated(secured: Secured) -> None:
    """The enrolment port is unauthenticated: refusals there are counted per address and
    reason, whatever node ids the caller makes up, so guessing tokens cannot flood the chain."""
    ca = secured.setup.ca_dir / "ca.crt"
    channel = grpc.secure_channel(secured.cluster.enrol_address, channel_credentials(ca))
    stub = enrolment_pb2_grpc.EnrolmentStub(channel)
    attempts = 0
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        request = enrolment_pb2.EnrollRequest(
            token=f"guess-{attempts}", node_id=f"node-{attempts}", csr_pem=b"-"
        )
        with pytest.raises(grpc.RpcError) as err:
            stub.Enroll(request, timeout=10)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED  # no such token
        attempts += 1
    channel.close()
    assert attempts >= 50

    entries = [e for e in _stop_controller(secured) if e.action == "enrolment.refused"]
    assert 1 <= len(entries) <= 4, [e.details for e in entries]
    assert sum(e.details["count"] for e in entries) == attempts
    assert {e.actor for e in entries} == {"ipv4:127.0.0.1"}
    assert entries[0].subject == "node-0"  # the first claim is kept as it was made


def test_every_refusal_class_is_audited_under_the_certificates_name(
    secured: Secured, tmp_path: Path
) -> None:
    # a certificate from the CA whose name is not in the trust policy
    stranger = tmp_path / "mallory"
    backstop(
        "pki", "issue", "--dir", str(secured.setup.ca_dir), "--name", "mallory",
        "--role", "client", "--out", str(stranger),
    )  # fmt: skip
    refused = secured.cluster.cli("whoami", env={"BACKSTOP_TLS_DIR": str(stranger)})
    assert refused.code == 6
    assert "not in the trust policy" in refused.err
    creds = channel_credentials(
        stranger / "ca.crt", stranger / "client.crt", stranger / "client.key"
    )
    with grpc.secure_channel(secured.cluster.address, creds) as channel:
        stub = control_pb2_grpc.ControlServiceStub(channel)
        for _ in range(20):
            with pytest.raises(grpc.RpcError):
                stub.WhoAmI(control_pb2.WhoAmIRequest(), timeout=10)
    # a role refusal, where no name is claimed (it used to be recorded as IP:port)
    assert secured.cli("vic", "pki", "token", "--node", "gpu-3").code == 6
    # an oversized request
    channel, viewer = _viewer(secured)
    with pytest.raises(grpc.RpcError) as err:
        viewer.ListWorkloads(
            control_pb2.ListWorkloadsRequest(node_id="n" * (8 * 1024 * 1024 + 1)), timeout=30
        )
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    channel.close()
    # a malformed agent message: a second Hello on a stream
    tls = _enrol(secured, "gpu-2", tmp_path / "state-gpu-2")
    agent_channel, agent = _agent_stub(secured, tls)
    responses = agent.Connect(iter([_hello("gpu-2"), _hello("gpu-2")]), timeout=10)
    with pytest.raises(grpc.RpcError) as err:
        list(responses)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    agent_channel.close()

    refusals = [e for e in _stop_controller(secured) if e.action.endswith(".refused")]
    seen = {(e.actor, e.action, e.subject, e.details["refusal"]) for e in refusals}
    assert seen >= {
        ("mallory", "request.refused", "asking who you are", "not_in_policy"),
        ("vic", "request.refused", "creating an enrolment token", "role"),
        ("vic", "request.refused", "/backstop.v1.ControlService/ListWorkloads", "oversized"),
        ("gpu-2", "agent.refused", "gpu-2", "invalid_message"),
    }
    whoami = [e for e in refusals if e.actor == "mallory"]
    assert len(whoami) == 2  # the first at once, the other 20 counted and written at shutdown
    assert sum(e.details["count"] for e in whoami) == 21
    for entry in refusals:
        assert entry.actor != entry.details.get("peer")
        assert not entry.actor.startswith(("ipv4:", "ipv6:"))
