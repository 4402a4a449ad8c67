"""A correction a policy started, at the agent: the policy it carries is its authority, and
the agent holds the correction to that policy itself (digest, issuer, action, parameters,
named workloads, expiry, the quorum over the document, a match in its own view)."""

from __future__ import annotations

import dataclasses
import time

from backstop.core.models import (
    Action,
    Command,
    CommandAck,
    PolicyAuthority,
    Scope,
    SignatureRecord,
    TargetState,
)
from backstop.core.policies import digest_of
from backstop.core.specs import new_spec
from backstop.security.keys import generate_key
from backstop.security.quorum import sign_correction
from backstop.wire.correction_convert import spec_bytes
from tests.agent.enforcer_harness import (  # noqa: F401 - the fixtures are used by name
    NODE,
    WORKLOAD_ID,
    Agent,
    agent_fixture,
    assert_refused,
    assert_running,
    frozen,
    workloads_fixture,
)
from tests.support.workloads import proc_state, wait_until

PAUSE_POLICY = f"""name: hold-the-node
match:
  node: {NODE}
action: pause
""".encode()
TERMINATE_POLICY = f"""name: stop-the-node
match:
  node: {NODE}
action: terminate
params: {{grace_s: 2}}
""".encode()
UNMATCHED_POLICY = b"""name: some-other-model
match:
  model_id: "0123456789abcdef"
action: pause
"""


def _signed(agent: Agent, document: bytes, *signers: tuple[str, str]) -> PolicyAuthority:
    return PolicyAuthority(document, tuple(agent.sign(p, document, r) for p, r in signers))


def _command(
    document: bytes,
    authority: PolicyAuthority | None,
    *,
    action: Action = Action.PAUSE,
    issuer: str = "",
    scope: Scope | None = None,
    ttl_s: float = 600.0,
    sequence: int = 1,
) -> Command:
    name = document.split(b"\n", 1)[0].removeprefix(b"name: ").decode()
    spec = new_spec(
        action,
        scope or Scope(node_ids=(NODE,), workload_ids=(WORKLOAD_ID,)),
        f"policy {name} v1: node is {NODE}",
        issuer or f"policy:{name}",
        now_s=time.time(),
        ttl_s=ttl_s,
        correction_id=f"cor-{digest_of(document)[:12]}{sequence:04x}",
        policy_digest=digest_of(document),
    )
    if action is Action.TERMINATE:
        spec = dataclasses.replace(spec, params=dataclasses.replace(spec.params, grace_s=2.0))
    return Command(sequence, spec, spec_bytes(spec), (), authority=authority)


def _applied(agent: Agent, cmd: Command) -> CommandAck:
    ack = agent.submit(cmd)
    assert ack.state is TargetState.APPLIED, ack
    return ack


def test_a_pause_its_policy_authorises_is_applied(agent: Agent) -> None:
    authority = _signed(agent, PAUSE_POLICY, ("alice", "issuer"))
    ack = _applied(agent, _command(PAUSE_POLICY, authority))
    assert [(o.workload_id, o.outcome) for o in ack.outcomes] == [(WORKLOAD_ID, "applied")]
    victim = agent.victim.pid
    assert wait_until(lambda: proc_state(victim) == "T" or frozen(victim))


def test_a_terminate_needs_the_quorum_over_the_policy(agent: Agent) -> None:
    issuer_only = _signed(agent, TERMINATE_POLICY, ("alice", "issuer"))
    cmd = _command(TERMINATE_POLICY, issuer_only, action=Action.TERMINATE)
    assert_refused(agent, cmd, "is not authorised", "2 approvals")
    quorum = _signed(
        agent, TERMINATE_POLICY, ("alice", "issuer"), ("bob", "approver"), ("carol", "approver")
    )
    _applied(agent, _command(TERMINATE_POLICY, quorum, action=Action.TERMINATE, sequence=2))
    assert wait_until(lambda: proc_state(agent.victim.pid) is None)


def test_what_the_policy_does_not_authorise_is_refused(agent: Agent) -> None:
    authority = _signed(agent, PAUSE_POLICY, ("alice", "issuer"))
    other = PolicyAuthority(PAUSE_POLICY + b"# edited\n", authority.signatures)
    cases = [
        (_command(PAUSE_POLICY, None), "carries none"),
        (_command(PAUSE_POLICY, other), "not the one its correction names"),
        (_command(PAUSE_POLICY, authority, issuer="policy:another"), "not by the policy"),
        (_command(PAUSE_POLICY, authority, action=Action.SHUTDOWN), "says pause"),
        (_command(PAUSE_POLICY, authority, scope=Scope(all=True)), "nothing broader"),
        (_command(PAUSE_POLICY, authority, scope=Scope(node_ids=(NODE,))), "nothing broader"),
    ]
    for sequence, (cmd, reason) in enumerate(cases, start=1):
        assert_refused(agent, dataclasses.replace(cmd, sequence=sequence), reason)
    mallory = generate_key()
    forged = PolicyAuthority(
        PAUSE_POLICY,
        (sign_correction(mallory, PAUSE_POLICY, signer="alice", role="issuer", signed_at_s=1.0),),
    )
    assert_refused(agent, _command(PAUSE_POLICY, forged, sequence=9), "unknown key")
    assert_running(agent.victim)


def test_an_expired_policy_authorises_nothing(agent: Agent) -> None:
    past = PAUSE_POLICY + b'expires: "2020-01-01T00:00:00Z"\n'
    authority = _signed(agent, past, ("alice", "issuer"))
    assert_refused(agent, _command(past, authority), "expires before the correction ends")
    soon = PAUSE_POLICY + b'expires: "2099-01-01T00:00:00Z"\n'
    _applied(agent, _command(soon, _signed(agent, soon, ("alice", "issuer")), sequence=2))


def test_a_named_workload_the_policy_does_not_match_here_is_skipped(agent: Agent) -> None:
    authority = _signed(agent, UNMATCHED_POLICY, ("alice", "issuer"))
    ack = _applied(agent, _command(UNMATCHED_POLICY, authority))
    (outcome,) = ack.outcomes
    assert (outcome.workload_id, outcome.outcome) == (WORKLOAD_ID, "skipped")
    assert "does not match policy some-other-model" in outcome.detail
    time.sleep(0.3)
    assert_running(agent.victim)


def test_people_signatures_do_not_stand_in_for_the_policy(agent: Agent) -> None:
    cmd = _command(PAUSE_POLICY, None)
    signed: tuple[SignatureRecord, ...] = (agent.sign("alice", cmd.spec_bytes, "issuer"),)
    assert_refused(agent, dataclasses.replace(cmd, signatures=signed), "carries none")
