"""A compromised controller against a real, enrolled, secure agent and a real workload.

The double (``tests.support.rogue_controller``) holds the controller's TLS key and
certificate but no operator key. It relays commands the operators signed, renumbered and
replayed at will, and forges others. It must not make the agent act on anything the operators
did not sign to its quorum, nor make the agent refuse later valid commands.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backstop.api.v1 import types_pb2
from backstop.core.ids import new_correction_id
from backstop.core.models import Action, AuditHead, CorrectionSpec, Hold, Scope, TargetState
from backstop.demo import model_server
from backstop.security.keys import generate_key, load_private
from backstop.security.quorum import sign_correction
from backstop.wire import convert, correction_convert
from tests.e2e.conftest import start_model_in_cgroup
from tests.support.cgroups import cgroup2_mount, scratch_cgroup
from tests.support.cluster import LocalCluster, ModelServer, proc_state, tree, wait_for
from tests.support.rogue_controller import RogueController
from tests.support.secure import SecureSetup, backstop

pytestmark = pytest.mark.e2e

NODE = "gpu-1"
ROLES = {
    "admin": "admin",
    "alice": "operator",
    "bob": "operator",
    "carol": "approver",
    "dave": "approver",
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SecureSetup:
    root = tmp_path_factory.mktemp("pki")
    return SecureSetup(root, quorum={"shutdown": 2}).create(ROLES)


@dataclass
class Attack:
    cluster: LocalCluster
    setup: SecureSetup
    rogue: RogueController
    model: ModelServer
    model_cgroup: Path
    prefix: str
    """The agent's --cgroup-prefix."""
    workload_id: str

    def signed(
        self, spec: CorrectionSpec, issuer: str, *approvers: str
    ) -> tuple[bytes, types_pb2.SignedCorrection]:
        """What the operators sign (the double only ever gets these bytes)."""
        data = correction_convert.spec_bytes(spec)
        people = [(issuer, "issuer"), *((a, "approver") for a in approvers)]
        records = [
            sign_correction(
                load_private(self.setup.people[p].key),
                data,
                signer=p,
                role=role,
                signed_at_s=time.time(),
            )
            for p, role in people
        ]
        return data, correction_convert.signed_correction(data, records)

    def deliver(
        self,
        sequence: int,
        spec: CorrectionSpec,
        issuer: str = "alice",
        *approvers: str,
        head: AuditHead | None = None,
    ) -> TargetState:
        data, signed = self.signed(spec, issuer, *approvers)
        self.rogue.send(sequence, data, signed, head)
        return self.rogue.ack_for(spec.correction_id, sequence).state

    def holds(self, pid: int) -> tuple[Hold, ...] | None:
        report = self.rogue.latest_report()
        found = [w for w in report.workloads if w.root_pid == pid] if report else []
        return found[0].holds if found else None


def spec(
    action: Action, issuer: str = "alice", *, scope: Scope | None = None, reverts: str = ""
) -> CorrectionSpec:
    now = time.time()
    return CorrectionSpec(
        correction_id=new_correction_id(),
        action=action,
        scope=scope or Scope(all=True),
        reason="rogue",
        issuer=issuer,
        created_at_s=now,
        expires_at_s=now + 600,
        reverts=reverts,
    )


def spawn_in_cgroup(cluster: LocalCluster, name: str, cgroup: Path) -> ModelServer:
    """A model server started inside ``cgroup``, not waited for (a fence may kill it first).

    A shell joins the cgroup and execs the server: no Python runs between fork and exec in
    this process, whose gRPC threads (the double's) make that unsafe."""
    command = model_server.command(cluster.workdir / name, cluster.workdir / f"{name}.port")
    script = 'echo $$ > "$0" && exec "$@"'
    log = open(cluster.workdir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        ["/bin/sh", "-c", script, str(cgroup / "cgroup.procs"), *command],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    cluster.procs.append(proc)
    return ModelServer(proc, 0)


def answering(cluster: LocalCluster, name: str, server: ModelServer) -> ModelServer | None:
    """``server`` with its port once it answers, else None."""
    port_file = cluster.workdir / f"{name}.port"
    if not port_file.exists() or not port_file.read_text().strip():
        return None
    ready = ModelServer(server.proc, int(port_file.read_text()))
    return ready if ready.ask(timeout_s=1.0) is not None else None


def frozen(model: ModelServer) -> bool:
    """Stopped (/proc state T) or in a frozen cgroup, and not answering."""
    pids = tree(model.pid)
    stopped = any(proc_state(p) == "T" for p in pids)
    cgroup_frozen = False
    for pid in pids:
        try:
            line = next(
                x for x in Path(f"/proc/{pid}/cgroup").read_text().splitlines() if x[:3] == "0::"
            )
        except (OSError, StopIteration):
            continue
        mount = cgroup2_mount() or Path("/sys/fs/cgroup")
        events = mount / line[3:].lstrip("/") / "cgroup.events"
        cgroup_frozen |= events.exists() and "frozen 1" in events.read_text()
    return (stopped or cgroup_frozen) and model.ask(timeout_s=0.5) is None


@pytest.fixture
def attack(tmp_path: Path, pki: SecureSetup) -> Iterator[Attack]:
    cluster = LocalCluster(tmp_path, insecure=False)
    rogue = RogueController(pki.controller_tls)
    with scratch_cgroup("backstop-rogue") as root:
        try:
            # enrolment as documented, through the real controller, which then is taken over
            cluster.start_controller("127.0.0.1:0", *pki.controller_args())
            token = cluster.cli("pki", "token", "--node", NODE, env=pki.people["admin"].env())
            assert token.code == 0, token.err
            backstop(
                "agent", "enroll", "--enrol-address", cluster.enrol_address,
                "--token", token.out.split()[0], "--ca", str(pki.ca_dir / "ca.crt"),
                "--node-id", NODE, "--state-dir", str(tmp_path / f"state-{NODE}"),
            )  # fmt: skip
            cluster.kill_controller()
            model_cgroup = root / NODE / "model"
            model_cgroup.mkdir(parents=True)
            model = start_model_in_cgroup(cluster, "model", model_cgroup)  # before any gRPC thread
            rogue.start()
            prefix = "/" + str((root / NODE).relative_to(root.parent))
            cluster.start_agent(
                NODE, None, "--trust-policy", str(pki.policy), "--cgroup-prefix", prefix,
                controller=rogue.address,
            )  # fmt: skip

            def reported() -> str | None:
                report = rogue.latest_report()
                ids = [w.workload_id for w in report.workloads if w.root_pid == model.pid]
                return ids[0] if report and ids else None

            workload_id = wait_for(reported, 30, "the agent to report the model to the double")
            yield Attack(cluster, pki, rogue, model, model_cgroup, prefix, workload_id)
        finally:
            rogue.stop()
            cluster.stop()


def test_replays_renumbered_and_forged_commands_are_refused_and_lock_nothing_out(
    attack: Attack, tmp_path: Path
) -> None:
    rogue, model = attack.rogue, attack.model

    # forged: unsigned, and signed with a key the trust policy does not know
    unsigned = spec(Action.PAUSE)
    rogue.send(5, correction_convert.spec_bytes(unsigned))
    refused = rogue.ack_for(unsigned.correction_id, 5)
    assert (refused.state, refused.message) == (TargetState.REFUSED, "no issuer signature by alice")
    stranger = spec(Action.PAUSE)
    data = correction_convert.spec_bytes(stranger)
    record = sign_correction(generate_key(), data, signer="alice", role="issuer", signed_at_s=1.0)
    rogue.send(6, data, correction_convert.signed_correction(data, (record,)))
    forged = rogue.ack_for(stranger.correction_id, 6)
    assert forged.state is TargetState.REFUSED
    assert "unknown key" in forged.message
    assert model.ask() is not None

    # a pause the operators signed, applied; undone; then replayed under the highest sequence
    head = AuditHead(41, "ab" * 32)
    captured = spec(Action.PAUSE)
    assert attack.deliver(1, captured, head=head) is TargetState.APPLIED
    wait_for(lambda: frozen(model), 15, "the signed pause to freeze the model")
    resume = spec(Action.RESUME, reverts=captured.correction_id)
    assert attack.deliver(2, resume) is TargetState.APPLIED
    wait_for(lambda: model.ask() is not None, 15, "the model to answer again")
    data, signed = attack.signed(captured, "alice")  # the same spec, alice's signature again
    rogue.send(2**63 - 1, data, signed)
    replay = rogue.ack_for(captured.correction_id, 2**63 - 1)
    assert replay.state is TargetState.REFUSED
    assert f"replay of correction {captured.correction_id}" in replay.message
    time.sleep(1.0)
    assert model.ask() is not None

    # the sequence numbers start again at 1 (a controller on a lost store): still obeyed
    first = spec(Action.PAUSE)
    assert attack.deliver(1, first) is TargetState.APPLIED
    wait_for(lambda: frozen(model), 15, "a new pause under sequence 1 to freeze the model")

    # holds: bob pauses the paused workload too, and lifts only his own pause
    mine = Scope(workload_ids=(attack.workload_id,))
    a = spec(Action.PAUSE, scope=mine)
    b = spec(Action.PAUSE, "bob", scope=mine)
    assert attack.deliver(2, a) is TargetState.APPLIED
    assert attack.deliver(3, b, "bob") is TargetState.APPLIED
    assert attack.deliver(4, spec(Action.RESUME, reverts=first.correction_id)) is (
        TargetState.APPLIED
    )
    wait_for(
        lambda: (
            attack.holds(model.pid)
            == (Hold(a.correction_id, "pause"), Hold(b.correction_id, "pause"))
        ),
        10,
        "both holds in a report",
    )
    undo_b = spec(Action.RESUME, "bob", scope=mine, reverts=b.correction_id)
    assert attack.deliver(5, undo_b, "bob") is TargetState.APPLIED
    wait_for(
        lambda: attack.holds(model.pid) == (Hold(a.correction_id, "pause"),), 10, "A's hold only"
    )
    assert frozen(model), "bob's resume thawed a workload alice still holds paused"
    report = rogue.latest_report()
    assert report is not None
    assert [w.state for w in report.workloads if w.root_pid == model.pid] == ["paused"]
    undo_a = spec(Action.RESUME, scope=mine, reverts=a.correction_id)
    assert attack.deliver(6, undo_a) is TargetState.APPLIED
    wait_for(lambda: model.ask() is not None, 15, "the model to answer once no hold is left")

    # the witnessed controller head and the journal head, in reports and in the next Hello
    wait_for(
        lambda: (r := rogue.latest_report()) is not None and r.witnessed_audit_head == head,
        10,
        "the witnessed head in a report",
    )
    agent = attack.cluster.agents[NODE]
    agent.kill()
    agent.wait()
    hellos = len(rogue.hellos)
    attack.cluster.start_agent(
        NODE, None, "--trust-policy", str(attack.setup.policy), "--cgroup-prefix",
        attack.prefix,
        controller=rogue.address,
    )  # fmt: skip
    wait_for(lambda: len(rogue.hellos) > hellos, 20, "the restarted agent's Hello")
    hello = rogue.hellos[-1]
    assert convert.audit_head_from_pb(hello.witnessed_audit_head) == head
    journal = (tmp_path / f"state-{NODE}" / "audit.jsonl").read_text().splitlines()
    assert hello.journal_head.seq == len(journal)
    assert hello.journal_head.hash in journal[-1]


def test_one_operator_cannot_lift_a_shutdown_two_approved(attack: Attack) -> None:
    rogue = attack.rogue
    shutdown = spec(Action.SHUTDOWN)
    assert attack.deliver(1, shutdown, "alice", "carol", "dave") is TargetState.APPLIED
    wait_for(lambda: attack.model.proc.poll() is not None, 20, "the shutdown to terminate")

    alone = spec(Action.RESUME, reverts=shutdown.correction_id)
    data, signed = attack.signed(alone, "alice")
    rogue.send(2, data, signed)
    refused = rogue.ack_for(alone.correction_id, 2)
    assert refused.state is TargetState.REFUSED
    assert "resume needs 2 approvals" in refused.message

    # the fence holds: a workload started in scope again is terminated
    again = spawn_in_cgroup(attack.cluster, "model-again", attack.model_cgroup)
    wait_for(lambda: again.proc.poll() is not None, 30, "the fence to terminate the new model")
    journal = attack.cluster.workdir / f"state-{NODE}" / "audit.jsonl"
    fenced = [
        pids
        for entry in map(json.loads, journal.read_text().splitlines())
        if entry["action"] == "enforcement.reapply" and entry["subject"] == shutdown.correction_id
        for pids in entry["details"]["workloads"].values()
    ]
    assert any(again.pid in pids for pids in fenced), fenced

    approved = spec(Action.RESUME, reverts=shutdown.correction_id)
    assert attack.deliver(3, approved, "alice", "carol", "dave") is TargetState.APPLIED
    third = spawn_in_cgroup(attack.cluster, "model-third", attack.model_cgroup)
    third = wait_for(lambda: answering(attack.cluster, "model-third", third), 30, "model-third")
    time.sleep(2.0)  # several samples: nothing fences it any more
    assert third.proc.poll() is None
    assert third.ask() is not None
