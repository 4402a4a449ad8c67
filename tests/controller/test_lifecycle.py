"""The correction lifecycle: final outcomes stay final, unreachable is not final until expiry,
a scope that matched nothing is not success, and commands carry the audit head."""

from __future__ import annotations

import pytest

from backstop.controller.corrections import CorrectionsEngine
from backstop.controller.store import Store
from backstop.core.models import (
    Action,
    AuditHead,
    CommandAck,
    CorrectionState,
    Scope,
    TargetState,
    WorkloadOutcome,
)
from backstop.core.settings import ControllerSettings
from tests.controller.conftest import Clock, RecordingLink, node
from tests.controller.test_corrections import _ack, _request


def _actions(store: Store, subject: str) -> list[str]:
    return [e.action for e in store.list_audit() if e.subject == subject]


def test_an_ack_never_changes_a_final_outcome(engine: CorrectionsEngine, store: Store) -> None:
    link = RecordingLink("n1")
    engine.attach(link)
    created = engine.create(_request(scope=Scope(node_ids=("n1",))))
    cid = created.spec.correction_id
    seq, sent = link.sent[0]
    engine.on_ack("n1", CommandAck(cid, seq, TargetState.REFUSED, "bad signature"))
    assert engine.get(cid).state is CorrectionState.FAILED
    # the same node's key re-acknowledges the refused target as applied
    engine.on_ack("n1", _ack(sent, seq))
    engine.on_ack("n1", CommandAck(cid, seq, TargetState.REFUSED, "bad signature"))  # a repeat
    after = engine.get(cid)
    assert after.state is CorrectionState.FAILED
    assert (after.targets[0].state, after.targets[0].message) == (
        TargetState.REFUSED,
        "bad signature",
    )
    assert _actions(store, cid).count("ack.ignored") == 1
    ignored = next(e for e in store.list_audit() if e.action == "ack.ignored")
    assert (ignored.actor, ignored.details["state"], ignored.details["recorded"]) == (
        "n1",
        "applied",
        "refused",
    )


def test_an_undelivered_correction_expires_and_a_late_ack_cannot_reopen_it(
    engine: CorrectionsEngine, store: Store, clock: Clock
) -> None:
    link = RecordingLink("n1")
    engine.attach(link)
    created = engine.create(_request(scope=Scope(node_ids=("n1", "n2"))))
    cid = created.spec.correction_id
    seq, sent = link.sent[0]
    engine.on_ack("n1", _ack(sent, seq))
    engine.check_deadlines()
    assert engine.get(cid).state is CorrectionState.DISPATCHED
    clock.now = created.spec.expires_at_s + 1
    engine.check_deadlines()
    expired = engine.get(cid)
    assert expired.state is CorrectionState.EXPIRED
    assert expired.message == (
        "expired at 1970-01-01T01:16:40Z: 1 node(s) never acknowledged (n2); 1 applied"
    )
    assert {t.node_id: t.state for t in expired.targets} == {
        "n1": TargetState.APPLIED,
        "n2": TargetState.UNREACHABLE,
    }
    assert "correction.expired" in _actions(store, cid)
    engine.on_ack("n2", CommandAck(cid, 1, TargetState.APPLIED, "late"))
    assert engine.get(cid).state is CorrectionState.EXPIRED
    assert engine.redeliver("n2") == 0


def test_expiry_is_found_after_a_restart(store: Store, clock: Clock) -> None:
    settings = ControllerSettings(ack_timeout_s=5.0)
    store.upsert_node(node("n1"), clock.now)
    first = CorrectionsEngine(store, settings, clock=clock)
    link = RecordingLink("n1")
    first.attach(link)
    created = first.create(_request(scope=Scope(node_ids=("n1",))))
    clock.now = created.spec.expires_at_s + 1
    restarted = CorrectionsEngine(store, settings, clock=clock)
    restarted.recover()
    restarted.check_deadlines()
    expired = restarted.get(created.spec.correction_id)
    assert expired.state is CorrectionState.EXPIRED
    assert expired.targets[0].state is TargetState.UNREACHABLE
    assert expired.targets[0].message.startswith("not acknowledged before the expiry")


@pytest.mark.parametrize(
    "scope",
    [
        Scope(workload_ids=("wl-nope",)),
        Scope(model_hashes=("0123456789abcdef",)),
        Scope(selector=(("app", "nope", True),)),
    ],
)
def test_a_scope_that_matched_no_workload_fails(engine: CorrectionsEngine, scope: Scope) -> None:
    links = [RecordingLink("n1"), RecordingLink("n2"), RecordingLink("n3")]
    for link in links:
        engine.attach(link)
    created = engine.create(_request(scope=scope))
    for link in links:
        seq, sent = link.sent[0]
        engine.on_ack(link.node_id, CommandAck(sent.correction_id, seq, TargetState.APPLIED))
    done = engine.get(created.spec.correction_id)
    assert done.state is CorrectionState.FAILED
    assert done.message == "scope matched no workload on 3 node(s); nothing was paused"


def test_a_workload_scope_that_acted_somewhere_completes(engine: CorrectionsEngine) -> None:
    links = [RecordingLink("n1"), RecordingLink("n2"), RecordingLink("n3")]
    for link in links:
        engine.attach(link)
    created = engine.create(_request(scope=Scope(workload_ids=("wl",))))
    for link in links:
        seq, sent = link.sent[0]
        acted = (WorkloadOutcome("wl", (1,), "applied"),) if link.node_id == "n2" else ()
        engine.on_ack(
            link.node_id, CommandAck(sent.correction_id, seq, TargetState.APPLIED, "", acted)
        )
    assert engine.get(created.spec.correction_id).state is CorrectionState.COMPLETED


def test_a_node_scope_with_no_workloads_still_completes(engine: CorrectionsEngine) -> None:
    link = RecordingLink("n1")
    engine.attach(link)
    created = engine.create(_request(Action.PAUSE, Scope(node_ids=("n1",))))
    seq, sent = link.sent[0]
    engine.on_ack("n1", CommandAck(sent.correction_id, seq, TargetState.APPLIED, "held"))
    assert engine.get(created.spec.correction_id).state is CorrectionState.COMPLETED


def test_every_command_carries_the_audit_head_as_of_sending(
    engine: CorrectionsEngine, store: Store
) -> None:
    links = [RecordingLink("n1"), RecordingLink("n2")]
    for link in links:
        engine.attach(link)
    created = engine.create(_request(scope=Scope(node_ids=("n1", "n2"))))
    dispatch = [e for e in store.list_audit() if e.action == "correction.dispatch"][-1]
    assert [link.heads for link in links] == [[AuditHead(dispatch.seq, dispatch.hash)]] * 2
    # a redelivery (a new stream) carries the head as of then
    again = RecordingLink("n1")
    engine.attach(again)
    assert engine.redeliver("n1") == 1
    assert again.heads == [store.audit_head()]
    assert again.heads[0].seq > dispatch.seq
    assert created.spec.correction_id in {again.sent[0][1].correction_id}
