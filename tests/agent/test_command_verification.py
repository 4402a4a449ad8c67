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

import dataclasses
import time
from pathlib import Path

import pytest

from backstop.agent import state as state_module
from backstop.agent.state import AgentState
from backstop.core.models import Action, Command, TargetState
from backstop.security.audit import verify_file
from backstop.security.keys import generate_key
from backstop.security.quorum import sign_correction
from backstop.wire.correction_convert import spec_bytes
from tests.agent.enforcer_harness import (  # noqa: F401 - the fixtures are used by name
    WORKLOAD_ID,
    Agent,
    actions_for,
    agent_fixture,
    assert_refused,
    assert_running,
    command,
    frozen,
    make_spec,
    workloads_fixture,
)
from tests.support.workloads import proc_state, wait_until

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


def test_a_new_correction_under_an_old_or_equal_sequence_is_applied(agent: Agent) -> None:
    """The sequence is not signed and only orders delivery: a controller restarted on a lost
    store numbers from 1 again, and its commands must still act."""
    huge = 2**63 - 1
    first = agent.submit(command(agent, huge, make_spec("cor-observe", Action.OBSERVE)))
    assert first.state is TargetState.APPLIED, first
    assert agent.state.last_command_sequence == huge  # kept, for information only
    for sequence, cid in ((huge, "cor-observe-same-seq"), (3, "cor-observe-old-seq")):
        ack = agent.submit(command(agent, sequence, make_spec(cid, Action.OBSERVE)))
        assert ack.state is TargetState.APPLIED, ack
    pause = agent.submit(command(agent, 1, make_spec("cor-pause-seq-1", Action.PAUSE)))
    assert pause.state is TargetState.APPLIED, pause
    assert wait_until(lambda: proc_state(agent.victim.pid) == "T" or frozen(agent.victim.pid))


def test_a_captured_command_under_a_huge_sequence_is_a_replay_and_locks_nothing_out(
    agent: Agent,
) -> None:
    observe = command(agent, 1, make_spec("cor-observe", Action.OBSERVE))
    assert agent.submit(observe).state is TargetState.APPLIED
    replay = Command(2**63 - 1, observe.spec, observe.spec_bytes, observe.signatures)
    assert_refused(agent, replay, "replay of correction cor-observe", "already handled")
    later = agent.submit(command(agent, 2, make_spec("cor-pause-later", Action.PAUSE)))
    assert later.state is TargetState.APPLIED, later


def test_a_redelivery_under_its_own_sequence_gets_the_stored_ack(agent: Agent) -> None:
    pause = command(agent, 4, make_spec("cor-pause", Action.PAUSE))
    applied = agent.submit(pause)
    assert applied.state is TargetState.APPLIED, applied
    again = agent.submit(Command(4, pause.spec, pause.spec_bytes, pause.signatures))
    assert again == applied
    assert actions_for(agent, "cor-pause") == [
        "command.received",
        "action.apply",
        "action.result",
        "command.received",
        "command.redelivered",
    ]


@pytest.mark.parametrize(
    ("created_in_s", "expires_in_s", "reason"),
    [
        pytest.param(0.0, 7 * 86400.0 + 60, "at most 7 days", id="longer-than-seven-days"),
        pytest.param(301.0, 600.0, "in the future", id="created-in-the-future"),
    ],
)
def test_a_spec_the_agent_would_have_to_remember_too_long_is_refused(
    agent: Agent, created_in_s: float, expires_in_s: float, reason: str
) -> None:
    now = time.time()
    spec = dataclasses.replace(
        make_spec("cor-long", Action.PAUSE),
        created_at_s=now + created_in_s,
        expires_at_s=now + expires_in_s,
    )
    assert_refused(agent, command(agent, 1, spec), reason)


def test_every_unexpired_correction_is_remembered_across_restarts(
    agent: Agent, tmp_path: Path
) -> None:
    """Older handled corrections than the newest kept ones survive while they are in force."""
    keep = agent.state.corrections
    first = agent.submit(command(agent, 9, make_spec("cor-first", Action.OBSERVE)))
    assert first.state is TargetState.APPLIED
    for i in range(state_module.KEEP_CORRECTIONS + 5):
        expired = dataclasses.replace(
            keep["cor-first"], correction_id=f"cor-old-{i}", expires_at_s=time.time() - 1
        )
        agent.state.record(expired)
    reloaded = AgentState(tmp_path / "state")
    assert "cor-first" in reloaded.corrections
    assert len(reloaded.corrections) == state_module.KEEP_CORRECTIONS + 1


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
