"""Undo as guarded as do: ``reverts`` only on a resume, a resume only of a correction in force
with its scope, at the quorum of the undone action; a replayed create is refused as such."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backstop.controller.authz import Authorizer, Caller
from backstop.controller.corrections import CorrectionsEngine
from backstop.controller.store import Store
from backstop.core.errors import BackstopError, Conflict, InvalidInput
from backstop.core.ids import new_correction_id
from backstop.core.models import (
    Action,
    CommandAck,
    CorrectionSpec,
    CorrectionState,
    Scope,
    SignatureRecord,
    TargetState,
)
from backstop.core.settings import ControllerSettings
from backstop.security.identities import Role, TrustPolicyFile
from backstop.security.keys import OperatorKey, generate_key
from backstop.security.quorum import sign_correction
from backstop.wire import correction_convert
from tests.controller.conftest import Clock, RecordingLink, node
from tests.controller.test_corrections import _ack, _request

PEOPLE = {"alice": "operator", "bob": "approver", "carol": "approver"}
KEYS: dict[str, OperatorKey] = {name: generate_key() for name in PEOPLE}
ALICE = Caller("alice", Role.OPERATOR, authenticated=True)


def _spec(clock: Clock, action: Action, scope: Scope, reverts: str = "") -> CorrectionSpec:
    return CorrectionSpec(
        correction_id=new_correction_id(),
        action=action,
        scope=scope,
        reason="test",
        issuer="alice",
        created_at_s=clock.now,
        expires_at_s=clock.now + 600,
        reverts=reverts,
    )


def _signed(spec: CorrectionSpec, *approvers: str) -> tuple[bytes, tuple[SignatureRecord, ...]]:
    data = correction_convert.spec_bytes(spec)
    sigs = [sign_correction(KEYS["alice"], data, signer="alice", role="issuer", signed_at_s=1.0)]
    sigs += [
        sign_correction(KEYS[a], data, signer=a, role="approver", signed_at_s=1.0)
        for a in approvers
    ]
    return data, tuple(sigs)


@pytest.fixture
def secure(store: Store, clock: Clock, tmp_path: Path) -> CorrectionsEngine:
    """An engine with a trust policy: shutdown needs two approvers (so does its resume)."""
    policy = tmp_path / "trust.json"
    people = [{"name": n, "role": r, "keys": [KEYS[n].public_text()]} for n, r in PEOPLE.items()]
    policy.write_text(json.dumps({"people": people, "quorum": {"shutdown": 2}}))
    store.upsert_node(node("n1"), clock.now)
    return CorrectionsEngine(
        store, ControllerSettings(), clock=clock, authz=Authorizer(TrustPolicyFile(policy))
    )


def _refusals(store: Store) -> list[str]:
    return [
        str(e.details["reason"]) for e in store.list_audit() if e.action == "correction.refused"
    ]


def _completed(engine: CorrectionsEngine, link: RecordingLink, cid: str) -> None:
    seq, sent = next((s, c) for s, c in link.sent if c.correction_id == cid)
    engine.on_ack(link.node_id, _ack(sent, seq))


def test_a_resume_needs_the_quorum_of_the_shutdown_it_undoes(
    secure: CorrectionsEngine, store: Store, clock: Clock
) -> None:
    link = RecordingLink("n1")
    secure.attach(link)
    shutdown = _spec(clock, Action.SHUTDOWN, Scope(node_ids=("n1",)))
    created = secure.create_signed(*_signed(shutdown, "bob", "carol"), ALICE)
    _completed(secure, link, created.spec.correction_id)
    assert secure.get(shutdown.correction_id).state is CorrectionState.COMPLETED

    resume = _spec(clock, Action.RESUME, shutdown.scope, reverts=shutdown.correction_id)
    data, sigs = _signed(resume)
    proposed = secure.create_signed(data, sigs, ALICE)
    assert proposed.state is CorrectionState.PROPOSED  # alice alone cannot lift it
    assert proposed.approvals_required == 2
    assert [c.correction_id for _, c in link.sent] == [shutdown.correction_id]
    bob = Caller("bob", Role.APPROVER, authenticated=True)
    after_bob = secure.approve(resume.correction_id, _signed(resume, "bob")[1][1], bob)
    assert after_bob.state is CorrectionState.PROPOSED
    carol = Caller("carol", Role.APPROVER, authenticated=True)
    approved = secure.approve(resume.correction_id, _signed(resume, "carol")[1][1], carol)
    assert approved.state is CorrectionState.DISPATCHED
    assert secure.get(shutdown.correction_id).state is CorrectionState.COMPLETED  # not yet
    _completed(secure, link, resume.correction_id)
    assert secure.get(resume.correction_id).state is CorrectionState.COMPLETED
    assert secure.get(shutdown.correction_id).state is CorrectionState.REVERTED


def test_reverts_is_refused_on_anything_but_a_resume(
    secure: CorrectionsEngine, store: Store, clock: Clock
) -> None:
    link = RecordingLink("n1")
    secure.attach(link)
    paused = secure.create_signed(*_signed(_spec(clock, Action.PAUSE, Scope(all=True))), ALICE)
    cid = paused.spec.correction_id
    _completed(secure, link, cid)
    observe = _spec(clock, Action.OBSERVE, Scope(all=True), reverts=cid)
    with pytest.raises(InvalidInput, match="only a resume may name a correction it reverts"):
        secure.create_signed(*_signed(observe), ALICE)
    assert secure.get(cid).state is CorrectionState.COMPLETED
    assert store.get_correction(observe.correction_id) is None
    assert _refusals(store) == ["only a resume may name a correction it reverts; this is a observe"]


def test_a_resume_only_of_a_correction_in_force_and_with_its_scope(
    secure: CorrectionsEngine, store: Store, clock: Clock
) -> None:
    link = RecordingLink("n1")
    secure.attach(link)

    def create(spec: CorrectionSpec) -> str:
        return secure.create_signed(*_signed(spec), ALICE).spec.correction_id

    def resume_of(cid: str, scope: Scope | None = None) -> CorrectionSpec:
        return _spec(clock, Action.RESUME, scope or Scope(all=True), reverts=cid)

    failed = create(_spec(clock, Action.PAUSE, Scope(all=True)))
    seq, _ = link.sent[-1]
    secure.on_ack("n1", CommandAck(failed, seq, TargetState.REFUSED, "expired"))
    paused = create(_spec(clock, Action.PAUSE, Scope(all=True)))
    _completed(secure, link, paused)
    attempts = {
        "nothing applied": resume_of(failed),
        "other scope": resume_of(paused, Scope(node_ids=("n1",))),
        "no reverts": resume_of(""),
    }
    refused: dict[str, str] = {}
    for name, spec in attempts.items():
        with pytest.raises(BackstopError) as err:
            secure.create_signed(*_signed(spec), ALICE)
        refused[name] = err.value.message
    first = create(resume_of(paused))
    _completed(secure, link, first)
    for name, spec in {"reverted": resume_of(paused), "a resume": resume_of(first)}.items():
        with pytest.raises(Conflict) as conflict:
            secure.create_signed(*_signed(spec), ALICE)
        refused[name] = conflict.value.message
    assert refused == {
        "nothing applied": f"{failed} is not in force: it failed with nothing applied",
        "other scope": "a resume must keep the scope of the correction it reverts",
        "no reverts": "a resume must name the correction it reverts",
        "reverted": f"{paused} was already reverted",
        "a resume": f"{first} is itself a resume",
    }
    assert _refusals(store) == list(refused.values())


def test_the_original_is_reverted_only_when_its_resume_completes(
    engine: CorrectionsEngine,
) -> None:
    link = RecordingLink("n1")
    engine.attach(link)
    paused = engine.create(_request(scope=Scope(node_ids=("n1",))))
    _completed(engine, link, paused.spec.correction_id)
    resumed = engine.resume(paused.spec.correction_id, "", "bob")
    seq, sent = link.sent[-1]
    engine.on_ack("n1", CommandAck(sent.correction_id, seq, TargetState.FAILED, "no cgroup"))
    assert engine.get(resumed.spec.correction_id).state is CorrectionState.FAILED
    assert engine.get(paused.spec.correction_id).state is CorrectionState.COMPLETED


def test_a_replayed_create_is_audited_as_refused(
    secure: CorrectionsEngine, store: Store, clock: Clock
) -> None:
    request = _signed(_spec(clock, Action.PAUSE, Scope(all=True)))
    created = secure.create_signed(*request, ALICE)
    with pytest.raises(Conflict, match="exists already"):
        secure.create_signed(*request, ALICE)
    cid = created.spec.correction_id
    actions = [e.action for e in store.list_audit() if e.subject == cid]
    assert actions.count("correction.create") == 1
    assert actions.count("correction.refused") == 1


def test_a_proposal_that_expires_unapproved_is_expired(
    secure: CorrectionsEngine, clock: Clock
) -> None:
    shutdown = _spec(clock, Action.SHUTDOWN, Scope(all=True))
    proposed = secure.create_signed(*_signed(shutdown, "bob"), ALICE)
    assert proposed.state is CorrectionState.PROPOSED
    clock.now = shutdown.expires_at_s
    secure.check_deadlines()
    expired = secure.get(shutdown.correction_id)
    assert expired.state is CorrectionState.EXPIRED
    assert "while waiting for approvals; nothing was sent" in expired.message
    carol = Caller("carol", Role.APPROVER, authenticated=True)
    with pytest.raises(Conflict, match="not waiting for approval"):
        secure.approve(shutdown.correction_id, _signed(shutdown, "carol")[1][1], carol)
