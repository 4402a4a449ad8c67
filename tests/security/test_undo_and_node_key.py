"""Undo as guarded as do, and what a node's own key cannot do, against real processes.

The secured cluster of ``test_secure_cluster`` (CA, mutual TLS, enrolled agent, Ed25519 people),
with a policy where shutdown needs two approvers: one operator alone cannot resume it, an
observe naming a correction it "reverts" is refused, and with gpu-1's own certificate a raw
client can neither flood nor freeze gpu-1's inventory, nor rewrite a final outcome.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from backstop.api.v1 import agent_pb2, agent_pb2_grpc, control_pb2, types_pb2
from backstop.core.ids import new_correction_id
from backstop.core.models import Action, CorrectionSpec, NodeInfo, Scope
from backstop.security.tls import channel_credentials
from backstop.wire import convert
from tests.security import test_secure_cluster as cluster_tests
from tests.security.test_secure_cluster import ROLES, Secured, _signed_request, _stub
from tests.support.cluster import wait_for
from tests.support.secure import SecureSetup

pytestmark = pytest.mark.e2e
secured = cluster_tests.secured
"""The secured cluster fixture, over this module's ``pki``."""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SecureSetup:
    root = tmp_path_factory.mktemp("pki-undo")
    return SecureSetup(root, quorum={"terminate": 2, "shutdown": 2}).create(ROLES)


def _state(secured: Secured, cid: str) -> str:
    result = secured.cli("vic", "status", cid, "-o", "json")
    assert result.code == 0, result.err
    return str(result.json()["state"])


def test_one_operator_cannot_resume_a_shutdown_two_approved(secured: Secured) -> None:
    shutdown = secured.cli(
        "alice", "shutdown", "--all", "--grace", "1", "--reason", "stop", "--yes", "-o", "json"
    )  # fmt: skip
    assert shutdown.code == 0, shutdown.err
    cid = shutdown.json()["spec"]["correction_id"]
    for approver in ("bob", "carol"):
        assert secured.cli(approver, "approve", cid, "--yes").code == 0
    wait_for(lambda: _state(secured, cid) == "completed", 20, "the shutdown to complete")
    assert secured.model.proc.wait(10) is not None

    resume = secured.cli("alice", "resume", cid, "-o", "json")
    assert resume.code == 0, resume.err
    rid = resume.json()["spec"]["correction_id"]
    assert resume.json()["state"] == "proposed"
    assert resume.json()["approvals_required"] == 2
    time.sleep(1.0)
    assert _state(secured, rid) == "proposed"  # nothing sent on alice's word alone
    assert _state(secured, cid) == "completed"
    assert ("gpu-1", "command.ack", rid) not in secured.audit_actions()

    assert secured.cli("bob", "approve", rid, "--yes").code == 0
    assert _state(secured, rid) == "proposed"
    assert secured.cli("carol", "approve", rid, "--yes").code == 0
    wait_for(lambda: _state(secured, rid) == "completed", 20, "the resume to complete")
    assert _state(secured, cid) == "reverted"
    actions = secured.audit_actions()
    assert ("gpu-1", "command.ack", rid) in actions
    assert ("controller", "correction.reverted", cid) in actions


def test_an_observe_carrying_reverts_is_refused(secured: Secured) -> None:
    paused = secured.cli("alice", "pause", "--all", "--reason", "hold", "--yes", "--wait")
    assert paused.code == 0, paused.err + paused.out
    cid = paused.out.split()[0]
    now = time.time()
    observe = CorrectionSpec(
        correction_id=new_correction_id(),
        action=Action.OBSERVE,
        scope=Scope(all=True),
        reason="lift it sideways",
        issuer="alice",
        created_at_s=now,
        expires_at_s=now + 600,
        reverts=cid,
    )
    channel, stub = _stub(secured, "alice")
    with pytest.raises(grpc.RpcError) as err:
        stub.CreateCorrection(
            control_pb2.CreateCorrectionRequest(
                signed=_signed_request(observe, secured.person("alice").key, "alice")
            ),
            timeout=10,
        )
    channel.close()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "only a resume may name a correction it reverts" in (err.value.details() or "")
    assert _state(secured, cid) == "completed"
    assert ("alice", "correction.refused", observe.correction_id) in secured.audit_actions()
    assert secured.model.ask(timeout_s=1.0) is None  # still paused


class NodeKeyClient:
    """A raw agent stream with gpu-1's own certificate and key (stolen from its host)."""

    def __init__(self, secured: Secured, state_dir: Path) -> None:
        tls = state_dir / "tls"
        creds = channel_credentials(tls / "ca.crt", tls / "node.crt", tls / "node.key")
        options = [("grpc.max_send_message_length", 8 * 1024 * 1024)]
        self._channel = grpc.secure_channel(secured.cluster.address, creds, options=options)
        self._stub = agent_pb2_grpc.AgentGatewayStub(self._channel)

    def stream(self, *messages: agent_pb2.AgentMessage) -> grpc.StatusCode:
        """Hello as gpu-1, then ``messages``; the status the stream ends with."""

        def requests() -> Iterator[agent_pb2.AgentMessage]:
            hello = agent_pb2.Hello(node=convert.node_to_pb(NodeInfo("gpu-1")))
            yield agent_pb2.AgentMessage(hello=hello)
            yield from messages

        self.details = ""
        try:
            for _ in self._stub.Connect(requests(), timeout=15):
                pass
        except grpc.RpcError as exc:
            self.details = exc.details() or ""
            return exc.code()  # type: ignore[no-any-return]
        return grpc.StatusCode.OK

    def close(self) -> None:
        self._channel.close()


def _report(sequence: int, workloads: int = 0) -> agent_pb2.AgentMessage:
    return agent_pb2.AgentMessage(
        report=agent_pb2.Report(
            sequence=sequence,
            sampled_at_s=time.time(),
            workloads=[
                types_pb2.Workload(workload_id=f"fake-{i:05d}", root_pid=i + 1, pids=[i + 1])
                for i in range(workloads)
            ],
        )
    )


def _stored_sequence(tmp_path: Path) -> int:
    with sqlite3.connect(tmp_path / "backstop.db") as db:
        (seq,) = db.execute("SELECT last_report_seq FROM nodes WHERE node_id='gpu-1'").fetchone()
    return int(seq)


def _model_reported(secured: Secured) -> bool:
    result = secured.cli("vic", "workloads", "-o", "json")
    pids = {w["root_pid"] for w in result.json()} if result.code == 0 else set()
    return result.code == 0 and secured.model.pid in pids and len(pids) < 100


def test_a_node_key_can_neither_flood_nor_freeze_the_inventory(
    secured: Secured, tmp_path: Path
) -> None:
    raw = NodeKeyClient(secured, tmp_path / "state-gpu-1")
    try:
        flood = raw.stream(_report(_stored_sequence(tmp_path) + 1, workloads=20_000))
        assert flood is grpc.StatusCode.INVALID_ARGUMENT
        assert "20000 workloads; at most 4096" in raw.details
        frozen = raw.stream(_report(10**9))
        assert frozen is grpc.StatusCode.INVALID_ARGUMENT
        assert "report sequence 1000000000" in raw.details
        assert _stored_sequence(tmp_path) < 10**6
        # the real agent's reports keep being stored
        before = _stored_sequence(tmp_path)
        wait_for(lambda: _stored_sequence(tmp_path) > before + 2, 20, "the real agent's reports")
        wait_for(lambda: _model_reported(secured), 20, "the real inventory")
        refusals = [a for a in secured.audit_actions() if a[1] == "report.refused"]
        assert refusals == [("gpu-1", "report.refused", "gpu-1")] * 2

        # a jump within the bounds is stored, and the real agent continues above it
        jump = _stored_sequence(tmp_path) + 500_000
        assert raw.stream(_report(jump)) is grpc.StatusCode.OK
        wait_for(lambda: _stored_sequence(tmp_path) > jump, 20, "the agent to adopt the jump")
        wait_for(lambda: _model_reported(secured), 20, "the real inventory")
        log = (tmp_path / "agent-gpu-1.log").read_text()
        assert "another sender may be using the identity" in log
    finally:
        raw.close()


def test_a_node_key_cannot_turn_a_failed_correction_into_a_completed_one(
    secured: Secured, tmp_path: Path
) -> None:
    nothing = secured.cli(
        "alice", "pause", "--workload", "wl-nope", "--reason", "x", "--yes", "--wait", "-o", "json"
    )  # fmt: skip
    assert nothing.code != 0
    correction = nothing.json()
    cid = correction["spec"]["correction_id"]
    assert correction["state"] == "failed"
    assert correction["message"] == "scope matched no workload on 1 node(s); nothing was paused"
    assert secured.model.ask() is not None
    # gpu-1's key acknowledges it again, as applied to a workload
    raw = NodeKeyClient(secured, tmp_path / "state-gpu-1")
    try:
        ack = agent_pb2.CommandAck(
            correction_id=cid,
            sequence=int(correction["targets"][0]["sequence"]),
            state=types_pb2.TARGET_STATE_APPLIED,
            message="paused after all",
            outcomes=[types_pb2.WorkloadOutcome(workload_id="wl-nope", outcome="applied")],
        )
        assert raw.stream(agent_pb2.AgentMessage(ack=ack)) is grpc.StatusCode.OK
    finally:
        raw.close()
    wait_for(
        lambda: ("gpu-1", "ack.ignored", cid) in secured.audit_actions(), 10, "the ignored ack"
    )
    status = secured.cli("vic", "status", cid, "-o", "json").json()
    assert status["state"] == "failed"
    assert status["targets"][0]["message"] != "paused after all"
