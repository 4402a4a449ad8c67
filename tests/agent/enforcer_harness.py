"""An enforcer wired as the daemon wires it, acting on a real workload process.

A real :class:`~backstop.agent.enforcer.Enforcer` (its queue running on an event loop in a
background thread) with a real state directory, a real ``ProcessActuator``, a trust policy
file and a local audit journal. Test modules import the fixtures (``agent_fixture``,
``workloads_fixture``) and use them as ``agent`` and ``workloads``.
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
from backstop.security.audit import AuditEntry, read_entries, verify_file
from backstop.security.audit_file import FileAuditLog
from backstop.security.identities import TrustPolicyFile
from backstop.security.keys import OperatorKey, generate_key
from backstop.security.quorum import sign_correction
from backstop.wire.correction_convert import spec_bytes
from tests.support.cgroups import cgroup2_mount
from tests.support.workloads import WorkloadFactory, WorkloadProcess, proc_state, wait_until

NODE = "node-under-attack"
WORKLOAD_ID = "wl-victim"
PEOPLE = {"alice": "operator", "bob": "approver", "carol": "approver", "vic": "viewer"}
QUORUM = {"terminate": 2, "shutdown": 2, "pause": 0}
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


@pytest.fixture(name="workloads")
def workloads_fixture(tmp_path: Path) -> Iterator[WorkloadFactory]:
    """Starts workload processes; every one of them is killed after the test."""
    factory = WorkloadFactory(tmp_path / "workloads")
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(name="agent")
def agent_fixture(tmp_path: Path, workloads: WorkloadFactory) -> Iterator[Agent]:
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
    before = recorded(agent, cmd.spec.correction_id)
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
    assert recorded(agent, cmd.spec.correction_id) == before
    assert_running(agent.victim)
    return ack


def recorded(agent: Agent, correction_id: str) -> dict[str, Any] | None:
    """What the agent's state file holds for ``correction_id``, as plain data."""
    applied = agent.state.corrections.get(correction_id)
    return dataclasses.asdict(applied) if applied is not None else None


def actions_for(agent: Agent, correction_id: str) -> list[str]:
    return [e.action for e in agent.journal() if e.subject == correction_id]
