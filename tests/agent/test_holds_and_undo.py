"""Holds, guarded undo, scopes that match nothing, and witnessed audit heads, at the agent.

Every effect on a workload is a hold keyed by its correction: a resume lifts only the hold
of the correction it reverts, and only with the quorum that correction's action needs to be
undone. The workload is a real process; paused means ``/proc`` state T or a frozen cgroup.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

from backstop.agent.enforcer import NOTHING_MATCHED
from backstop.core.models import Action, AuditHead, Command, Hold, Scope, TargetState
from backstop.security.audit import verify_file
from tests.agent.enforcer_harness import (  # noqa: F401 - the fixtures are used by name
    NODE,
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

QUORUM_SIGNERS = (("alice", "issuer"), ("bob", "approver"), ("carol", "approver"))


def paused(agent: Agent) -> bool:
    return proc_state(agent.victim.pid) == "T" or frozen(agent.victim.pid)


def reported_holds(agent: Agent) -> tuple[tuple[Hold, ...], str]:
    (workload,) = agent.enforcer.annotate([agent.victim.as_workload(WORKLOAD_ID, NODE)])
    return workload.holds, workload.state


def resume(agent: Agent, cid: str, reverts: str, sequence: int) -> Command:
    return command(agent, sequence, make_spec(cid, Action.RESUME, reverts=reverts))


# --- holds ----------------------------------------------------------------------------------


def test_one_operators_resume_lifts_only_their_own_pause(agent: Agent) -> None:
    a = agent.submit(command(agent, 1, make_spec("cor-pause-a", Action.PAUSE)))
    assert a.state is TargetState.APPLIED, a
    assert wait_until(lambda: paused(agent))
    b = agent.submit(command(agent, 2, make_spec("cor-pause-b", Action.PAUSE, issuer="alice")))
    assert b.state is TargetState.APPLIED, b
    assert [o.outcome for o in b.outcomes] == ["applied"]  # the hold is recorded, though paused
    assert reported_holds(agent) == (
        (Hold("cor-pause-a", "pause"), Hold("cor-pause-b", "pause")),
        "paused",
    )

    undo_b = agent.submit(resume(agent, "cor-resume-b", "cor-pause-b", 3))
    assert undo_b.state is TargetState.APPLIED, undo_b
    assert [(o.outcome, o.detail) for o in undo_b.outcomes] == [
        ("skipped", "stays paused: also held by cor-pause-a")
    ]
    assert paused(agent)
    counted = agent.victim.counter()
    assert not wait_until(lambda: agent.victim.counter() > counted, timeout_s=1.0)
    assert reported_holds(agent) == ((Hold("cor-pause-a", "pause"),), "paused")

    undo_a = agent.submit(resume(agent, "cor-resume-a", "cor-pause-a", 4))
    assert undo_a.state is TargetState.APPLIED, undo_a
    assert_running(agent.victim)
    assert reported_holds(agent) == ((), "running")


def test_a_lease_pause_is_a_hold_and_lifting_it_leaves_an_operators_pause(agent: Agent) -> None:
    engaged = asyncio.run_coroutine_threadsafe(agent.enforcer.engage_lease("", 99.0), agent.loop)
    engaged.result(timeout=30)
    assert wait_until(lambda: paused(agent))
    pause = agent.submit(command(agent, 1, make_spec("cor-pause", Action.PAUSE)))
    assert pause.state is TargetState.APPLIED, pause
    holds, state = reported_holds(agent)
    assert [h.action for h in holds] == ["pause", "pause"]
    assert holds[0].correction_id.startswith("lease-")
    assert holds[1] == Hold("cor-pause", "pause")
    assert state == "paused"

    lifted = asyncio.run_coroutine_threadsafe(agent.enforcer.lift_lease(), agent.loop)
    lifted.result(timeout=30)
    assert paused(agent), "lifting the lease thawed a workload an operator paused"
    assert reported_holds(agent) == ((Hold("cor-pause", "pause"),), "paused")
    undo = agent.submit(resume(agent, "cor-resume", "cor-pause", 2))
    assert undo.state is TargetState.APPLIED, undo
    assert_running(agent.victim)


# --- undo as guarded as do ------------------------------------------------------------------


def test_a_resume_needs_the_quorum_of_the_shutdown_it_undoes(agent: Agent) -> None:
    """Shutdown needs two approvals here; so does lifting its fence."""
    spec = dataclasses.replace(
        make_spec("cor-shutdown", Action.SHUTDOWN), scope=Scope(node_ids=(NODE,))
    )
    shutdown = agent.submit(command(agent, 1, spec, QUORUM_SIGNERS))
    assert shutdown.state is TargetState.APPLIED, shutdown
    assert wait_until(lambda: proc_state(agent.victim.pid) is None)

    def undo(cid: str, signers: tuple[tuple[str, str], ...]) -> Command:
        resume_spec = dataclasses.replace(
            make_spec(cid, Action.RESUME, reverts="cor-shutdown"), scope=spec.scope
        )
        return command(agent, 2, resume_spec, signers)

    journaled = len(agent.journal())
    alone = agent.submit(undo("cor-resume-alone", (("alice", "issuer"),)))
    assert alone.state is TargetState.REFUSED, alone
    assert "resume needs 2 approvals" in alone.message
    assert [e.action for e in agent.journal()[journaled:]] == [
        "command.received",
        "command.refused",
    ]
    assert [c.correction_id for c in agent.state.active(time.time())] == ["cor-shutdown"]

    approved = agent.submit(undo("cor-resume-approved", QUORUM_SIGNERS))
    assert approved.state is TargetState.APPLIED, approved
    assert "fence of cor-shutdown lifted" in approved.message
    assert agent.state.corrections["cor-shutdown"].reverted


def test_a_resume_that_changes_the_scope_is_refused(agent: Agent) -> None:
    pause = agent.submit(command(agent, 1, make_spec("cor-pause", Action.PAUSE)))
    assert pause.state is TargetState.APPLIED, pause
    wider = dataclasses.replace(
        make_spec("cor-resume-wider", Action.RESUME, reverts="cor-pause"), scope=Scope(all=True)
    )
    ack = agent.submit(command(agent, 2, wider))
    assert ack.state is TargetState.REFUSED, ack
    assert "must keep the scope of cor-pause" in ack.message
    assert paused(agent)


def test_reverts_on_anything_but_a_resume_and_a_resume_without_it_are_refused(
    agent: Agent,
) -> None:
    observe = make_spec("cor-observe-reverts", Action.OBSERVE, reverts="cor-anything")
    assert_refused(agent, command(agent, 1, observe), "observe cannot revert anything")
    bare = make_spec("cor-resume-bare", Action.RESUME)
    assert_refused(agent, command(agent, 2, bare), "must name the correction it reverts")


# --- a scope that matched nothing -----------------------------------------------------------


def test_workload_criteria_that_match_nothing_are_acknowledged_and_not_kept_in_force(
    agent: Agent,
) -> None:
    spec = dataclasses.replace(
        make_spec("cor-pause-nobody", Action.PAUSE), scope=Scope(workload_ids=("wl-later",))
    )
    ack = agent.submit(command(agent, 1, spec))
    assert (ack.state, ack.message, ack.outcomes) == (TargetState.APPLIED, NOTHING_MATCHED, ())
    # a workload of that id appearing later is not paused by it
    later = agent.victim.as_workload("wl-later", NODE)
    asyncio.run_coroutine_threadsafe(agent.enforcer.reconcile([later]), agent.loop).result(30)
    assert_running(agent.victim)
    assert "enforcement.reapply" not in actions_for(agent, "cor-pause-nobody")
    assert agent.state.active(0.0) == []


# --- witnessed audit heads ------------------------------------------------------------------


def test_the_controllers_audit_head_is_journaled_and_witnessed(agent: Agent) -> None:
    head = AuditHead(12, "ab" * 32)
    observe = dataclasses.replace(
        command(agent, 1, make_spec("cor-observe", Action.OBSERVE)), audit_head=head
    )
    assert agent.submit(observe).state is TargetState.APPLIED
    received = next(e for e in agent.journal() if e.action == "command.received")
    assert received.details["audit_head"] == {"seq": 12, "hash": "ab" * 32}
    assert agent.enforcer.witnessed_head() == head

    older = dataclasses.replace(
        command(agent, 2, make_spec("cor-observe-2", Action.OBSERVE)),
        audit_head=AuditHead(7, "cd" * 32),
    )
    assert agent.submit(older).state is TargetState.APPLIED
    assert agent.enforcer.witnessed_head() == head  # the newest stays

    rewritten = dataclasses.replace(
        command(agent, 3, make_spec("cor-observe-3", Action.OBSERVE)),
        audit_head=AuditHead(12, "ef" * 32),
    )
    assert agent.submit(rewritten).state is TargetState.APPLIED
    conflict = [e for e in agent.journal() if e.action == "audit.head_conflict"]
    assert [(e.details["seq"], e.details["witnessed_hash"]) for e in conflict] == [(12, "ab" * 32)]
    assert conflict[0].details["received_hash"] == "ef" * 32
    assert agent.enforcer.witnessed_head() == head

    last = agent.journal()[-1]
    assert agent.enforcer.journal_head() == AuditHead(last.seq, last.hash)
    assert verify_file(agent.journal_path).ok
