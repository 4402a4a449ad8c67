"""The agent refuses commands that a compromised or impersonated controller could send.

A real :class:`~backstop.agent.enforcer.Enforcer` (its queue running on an event loop in a
background thread) with a real state directory, a real ``ProcessActuator``, a trust policy
file and a local audit journal acts on a real workload process. Each hostile command must be
refused with a reason naming the problem, leave the process running (``/proc/PID/stat``, its
counter still advancing, its port still answering), and leave exactly
``command.received`` + ``command.refused`` in a journal whose hash chain verifies. The
positive cases show the same agent does act on properly signed commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from backstop.agent.actuators.workload_actuator import ProcessActuator
from backstop.agent.enforcer import Enforcer
from backstop.agent.state import AgentState
from backstop.agent.verifier import CommandVerifier
from backstop.core.models import (
    Action,
    ActionParams,
    Command,
    CommandAck,
    CorrectionSpec,
    Scope,
    SignatureRecord,
    TargetState,
    Workload,
)
from backstop.security.audit import AuditEntry, FileAuditLog, read_entries, verify_file
from backstop.security.identities import TrustPolicyFile
from backstop.security.keys import OperatorKey, generate_key
from backstop.security.quorum import sign_correction
from backstop.wire.convert import spec_bytes
from tests.support.cgroups import cgroup2_mount
from tests.support.workloads import WorkloadFactory, WorkloadProcess, proc_state, wait_until

NODE = "node-under-attack"
WORKLOAD_ID = "wl-victim"
PEOPLE = {"alice": "operator", "bob": "approver", "carol": "approver", "vic": "viewer"}
QUORUM = {"terminate": 2, "pause": 0}
ACK_TIMEOUT_S = 30.0
RUNNING_STATES = frozenset("RSD")


# --- the agent under attack ------------------------------------------------------------------


@dataclass
class Agent:
    """An enforcer wired as the daemon wires it, its journal, its keys and its victim."""

    enforcer: Enforcer
    state: AgentState
    journal_path: Path
    keys: dict[str, OperatorKey]
    victim: WorkloadProcess
    loop: asyncio.AbstractEventLoop

    def submit(self, command: Command) -> CommandAck:
        """Deliver one command through the enforcer's queue and wait for its ack."""
        future: Future[CommandAck] = asyncio.run_coroutine_threadsafe(
            self.enforcer.submit(command), self.loop
        )
        return future.result(timeout=ACK_TIMEOUT_S)

    def journal(self) -> list[AuditEntry]:
        return list(read_entries(self.journal_path))

    def sign(self, person: str, data: bytes, role: str) -> SignatureRecord:
        return sign_correction(self.keys[person], data, signer=person, role=role, signed_at_s=1.0)


def write_trust_policy(path: Path, keys: dict[str, OperatorKey]) -> None:
    people = [
        {"name": name, "role": role, "keys": [keys[name].public_text()]}
        for name, role in PEOPLE.items()
    ]
    path.write_text(json.dumps({"people": people, "quorum": QUORUM}, indent=2))


@pytest.fixture
def workloads(tmp_path: Path) -> Iterator[WorkloadFactory]:
    """Starts workload processes; every one of them is killed after the test."""
    factory = WorkloadFactory(tmp_path / "workloads")
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def agent(tmp_path: Path, workloads: WorkloadFactory) -> Iterator[Agent]:
    victim = workloads.start(listen=True, counter=True)
    keys = {name: generate_key() for name in PEOPLE}
    policy_path = tmp_path / "trust-policy.json"
    write_trust_policy(policy_path, keys)

    def refresh() -> list[Workload]:
        if proc_state(victim.pid) in (None, "Z", "X"):
            return []
        return [victim.as_workload(WORKLOAD_ID, NODE)]

    state = AgentState(tmp_path / "state")
    journal = FileAuditLog(tmp_path / "audit.jsonl")
    enforcer = Enforcer(
        NODE,
        state,
        refresh,
        ProcessActuator(),
        None,
        verifier=CommandVerifier(TrustPolicyFile(policy_path)),
        journal=journal,
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="enforcer-loop", daemon=True)
    thread.start()
    runner = asyncio.run_coroutine_threadsafe(enforcer.run(), loop)
    try:
        yield Agent(enforcer, state, journal.path, keys, victim, loop)
    finally:
        runner.cancel()
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        journal.close()


# --- building commands -----------------------------------------------------------------------


def make_spec(
    correction_id: str,
    action: Action,
    *,
    issuer: str = "alice",
    expires_in_s: float = 600.0,
    reverts: str = "",
) -> CorrectionSpec:
    now = time.time()
    return CorrectionSpec(
        correction_id=correction_id,
        action=action,
        scope=Scope(workload_ids=(WORKLOAD_ID,)),
        reason="test",
        issuer=issuer,
        created_at_s=now,
        expires_at_s=now + expires_in_s,
        params=ActionParams(grace_s=3.0) if action is Action.TERMINATE else ActionParams(),
        reverts=reverts,
    )


def command(
    agent: Agent,
    sequence: int,
    spec: CorrectionSpec,
    signers: tuple[tuple[str, str], ...] = (("alice", "issuer"),),
) -> Command:
    """``spec`` signed by each ``(person, role)`` in ``signers``, as the controller sends it."""
    data = spec_bytes(spec)
    signatures = tuple(agent.sign(person, data, role) for person, role in signers)
    return Command(sequence, spec, data, signatures)


# --- what the tests observe ------------------------------------------------------------------


def frozen(pid: int) -> bool:
    """Whether ``pid`` sits in a cgroup v2 group that reports ``frozen 1``."""
    mount = cgroup2_mount()
    if mount is None:
        return False
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return False
    path = next((line[3:] for line in lines if line.startswith("0::")), None)
    if path is None:
        return False
    events = mount / path.lstrip("/") / "cgroup.events"
    try:
        return "frozen 1" in events.read_text().splitlines()
    except OSError:
        return False


def assert_running(victim: WorkloadProcess) -> None:
    """The workload was not stopped, frozen or killed: it runs, counts and answers."""
    for pid in victim.tree_pids() or [victim.pid]:
        assert proc_state(pid) in RUNNING_STATES, f"pid {pid} is {proc_state(pid)}"
        assert not frozen(pid), f"pid {pid} is frozen"
    before = victim.counter()
    assert wait_until(lambda: victim.counter() > before, timeout_s=5.0), "the counter stopped"
    assert victim.ping(timeout_s=5.0).startswith(f"pong {victim.pid} ")


def assert_refused(agent: Agent, cmd: Command, *reason_parts: str) -> CommandAck:
    """Deliver ``cmd``; it must be refused, journaled as refused, and change nothing."""
    journaled = len(agent.journal())
    last_sequence = agent.state.last_command_sequence
    recorded = _recorded(agent, cmd.spec.correction_id)
    ack = agent.submit(cmd)

    assert ack.state is TargetState.REFUSED, ack
    assert ack.correction_id == cmd.spec.correction_id
    assert ack.sequence == cmd.sequence
    assert ack.outcomes == ()
    for part in reason_parts:
        assert part in ack.message, f"{part!r} not in the refusal {ack.message!r}"

    new = agent.journal()[journaled:]
    assert [e.action for e in new] == ["command.received", "command.refused"], new
    refused = new[1]
    assert refused.subject == cmd.spec.correction_id
    assert refused.actor == NODE
    assert refused.details["sequence"] == cmd.sequence
    assert refused.details["reason"] == ack.message
    verdict = verify_file(agent.journal_path)
    assert verdict.ok, verdict.reason
    assert agent.state.last_command_sequence == last_sequence
    assert _recorded(agent, cmd.spec.correction_id) == recorded
    assert_running(agent.victim)
    return ack


def _recorded(agent: Agent, correction_id: str) -> dict[str, Any] | None:
    """What the agent's state file holds for ``correction_id``, as plain data."""
    applied = agent.state.corrections.get(correction_id)
    return dataclasses.asdict(applied) if applied is not None else None


def actions_for(agent: Agent, correction_id: str) -> list[str]:
    return [e.action for e in agent.journal() if e.subject == correction_id]


# --- forged and impersonated signatures ------------------------------------------------------


def test_a_signature_over_other_bytes_is_refused_as_forged(agent: Agent) -> None:
    spec = make_spec("cor-forged", Action.PAUSE)
    other = spec_bytes(make_spec("cor-other", Action.PAUSE))
    forged = agent.sign("alice", other, "issuer")
    cmd = Command(1, spec, spec_bytes(spec), (forged,))
    assert_refused(agent, cmd, "forged", agent.keys["alice"].key_id, "alice")


def test_a_key_outside_the_trust_policy_is_refused(agent: Agent) -> None:
    spec = make_spec("cor-mallory", Action.PAUSE)
    data = spec_bytes(spec)
    mallory = generate_key()
    impostor = sign_correction(mallory, data, signer="alice", role="issuer", signed_at_s=1.0)
    assert_refused(agent, Command(1, spec, data, (impostor,)), "unknown key", mallory.key_id)


def test_a_forged_approval_rejects_the_whole_command(agent: Agent) -> None:
    spec = make_spec("cor-forged-approval", Action.TERMINATE)
    data = spec_bytes(spec)
    forged_bob = agent.sign("bob", data + b"\x00", "approver")
    cmd = Command(
        1,
        spec,
        data,
        (agent.sign("alice", data, "issuer"), forged_bob, agent.sign("carol", data, "approver")),
    )
    assert_refused(agent, cmd, "forged", "bob")


def test_a_signature_naming_another_signer_than_its_key_owner_is_refused(agent: Agent) -> None:
    """Bob's valid signature relabelled as Alice's: the key decides who signed."""
    spec = make_spec("cor-relabelled-signer", Action.PAUSE)
    data = spec_bytes(spec)
    bobs = sign_correction(agent.keys["bob"], data, signer="alice", role="issuer", signed_at_s=1.0)
    assert_refused(agent, Command(1, spec, data, (bobs,)), "names signer 'alice'", "belongs to bob")


def test_a_viewer_cannot_issue(agent: Agent) -> None:
    spec = make_spec("cor-viewer", Action.PAUSE, issuer="vic")
    cmd = command(agent, 1, spec, (("vic", "issuer"),))
    assert_refused(agent, cmd, "issuer vic is a viewer", "operator or above")


def test_an_issuer_signature_by_someone_else_is_refused(agent: Agent) -> None:
    spec = make_spec("cor-wrong-issuer", Action.PAUSE, issuer="alice")
    cmd = command(agent, 1, spec, (("bob", "issuer"),))
    assert_refused(agent, cmd, "issuer signature by bob", "the issuer is alice")


def test_a_command_without_signatures_is_refused(agent: Agent) -> None:
    spec = make_spec("cor-unsigned", Action.PAUSE)
    assert_refused(agent, command(agent, 1, spec, ()), "no issuer signature by alice")


# --- the quorum for terminate ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("approvals", "reason_parts"),
    [
        pytest.param(
            (("bob", "approver"),),
            ("terminate needs 2 approvals", "has 1 (bob)"),
            id="one-approval",
        ),
        pytest.param(
            (("bob", "approver"), ("bob", "approver")),
            ("terminate needs 2 approvals", "has 1 (bob)", "bob approved twice"),
            id="same-approver-twice",
        ),
        pytest.param(
            (("vic", "approver"), ("bob", "approver")),
            ("terminate needs 2 approvals", "has 1 (bob)", "vic is a viewer"),
            id="viewer-and-approver",
        ),
        pytest.param(
            (("alice", "approver"), ("bob", "approver")),
            ("terminate needs 2 approvals", "has 1 (bob)", "cannot approve their own"),
            id="issuer-approves-own",
        ),
    ],
)
def test_a_terminate_short_of_its_quorum_is_refused(
    agent: Agent, approvals: tuple[tuple[str, str], ...], reason_parts: tuple[str, ...]
) -> None:
    spec = make_spec("cor-terminate", Action.TERMINATE)
    cmd = command(agent, 1, spec, (("alice", "issuer"), *approvals))
    assert_refused(agent, cmd, *reason_parts)


def test_a_terminate_whose_signed_bytes_say_pause_is_refused(agent: Agent) -> None:
    """Signatures cover the exact bytes: a quorum-free pause cannot be relabelled terminate."""
    pause = make_spec("cor-relabelled", Action.PAUSE)
    data = spec_bytes(pause)
    terminate = make_spec("cor-relabelled", Action.TERMINATE)
    cmd = Command(
        1,
        terminate,
        spec_bytes(terminate),
        (agent.sign("alice", data, "issuer"), agent.sign("bob", data, "approver")),
    )
    assert_refused(agent, cmd, "forged")


# --- replay, order and expiry ----------------------------------------------------------------


def test_an_expired_command_is_refused(agent: Agent) -> None:
    spec = make_spec("cor-expired", Action.PAUSE, expires_in_s=-30.0)
    assert_refused(agent, command(agent, 1, spec), "expired")


def test_a_replayed_correction_is_refused_after_it_was_applied_and_undone(agent: Agent) -> None:
    victim = agent.victim
    pause = command(agent, 1, make_spec("cor-pause", Action.PAUSE))
    applied = agent.submit(pause)
    assert applied.state is TargetState.APPLIED, applied
    assert wait_until(lambda: proc_state(victim.pid) == "T" or frozen(victim.pid))

    resume_spec = make_spec("cor-resume", Action.RESUME, reverts="cor-pause")
    resumed = agent.submit(command(agent, 2, resume_spec))
    assert resumed.state is TargetState.APPLIED, resumed
    assert_running(victim)

    replay = Command(3, pause.spec, pause.spec_bytes, pause.signatures)
    assert_refused(agent, replay, "replay of correction cor-pause", "already handled")
    assert actions_for(agent, "cor-pause").count("action.apply") == 1
    assert agent.state.corrections["cor-pause"].sequence == 1


def test_the_same_sequence_delivered_again_is_refused(agent: Agent) -> None:
    first = agent.submit(command(agent, 1, make_spec("cor-observe", Action.OBSERVE)))
    assert first.state is TargetState.APPLIED, first
    again = command(agent, 1, make_spec("cor-pause-same-seq", Action.PAUSE))
    assert_refused(agent, again, "replayed or out-of-order", "sequence 1 is not above 1")


def test_an_old_sequence_number_is_refused(agent: Agent) -> None:
    first = agent.submit(command(agent, 7, make_spec("cor-observe", Action.OBSERVE)))
    assert first.state is TargetState.APPLIED, first
    assert agent.state.last_command_sequence == 7
    old = command(agent, 3, make_spec("cor-pause-old-seq", Action.PAUSE))
    assert_refused(agent, old, "replayed or out-of-order", "sequence 3 is not above 7")


def test_a_refused_command_does_not_advance_the_sequence(agent: Agent) -> None:
    """A forged command with a huge sequence number cannot lock out later, valid ones."""
    spec = make_spec("cor-huge-seq", Action.PAUSE)
    forged = Command(2**63, spec, spec_bytes(spec), ())
    assert_refused(agent, forged, "no issuer signature")
    valid = agent.submit(command(agent, 1, make_spec("cor-observe", Action.OBSERVE)))
    assert valid.state is TargetState.APPLIED, valid


# --- what properly signed commands do --------------------------------------------------------


def test_a_pause_signed_by_its_issuer_is_applied(agent: Agent) -> None:
    victim = agent.victim
    ack = agent.submit(command(agent, 1, make_spec("cor-pause", Action.PAUSE)))
    assert ack.state is TargetState.APPLIED, ack
    assert [o.workload_id for o in ack.outcomes] == [WORKLOAD_ID]
    assert ack.outcomes[0].outcome == "applied"
    assert wait_until(lambda: proc_state(victim.pid) == "T" or frozen(victim.pid))
    counted = victim.counter()
    time.sleep(0.2)
    assert victim.counter() == counted, "a paused workload kept counting"
    assert actions_for(agent, "cor-pause") == [
        "command.received",
        "action.apply",
        "action.result",
    ]
    assert verify_file(agent.journal_path).ok


def test_a_terminate_with_its_quorum_terminates_the_workload(agent: Agent) -> None:
    victim = agent.victim
    spec = make_spec("cor-terminate", Action.TERMINATE)
    cmd = command(agent, 1, spec, (("alice", "issuer"), ("bob", "approver"), ("carol", "approver")))
    ack = agent.submit(cmd)
    assert ack.state is TargetState.APPLIED, ack
    assert ack.outcomes[0].outcome == "applied", ack.outcomes
    assert victim.pid in ack.outcomes[0].pids
    # gone and reaped: not even a zombie is left in /proc
    assert wait_until(lambda: proc_state(victim.pid) is None), proc_state(victim.pid)
    with pytest.raises(OSError):
        victim.ping(timeout_s=1.0)
    assert actions_for(agent, "cor-terminate") == [
        "command.received",
        "action.apply",
        "action.result",
    ]
    assert verify_file(agent.journal_path).ok
