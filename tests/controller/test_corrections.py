"""The corrections engine: dispatch, acks, deadlines, resume, watching."""

from __future__ import annotations

import asyncio

import pytest

from backstop.controller.corrections import CorrectionsEngine, CreateRequest
from backstop.controller.store import Store
from backstop.core.errors import Conflict, InvalidInput, NotFound
from backstop.core.models import (
    Action,
    CommandAck,
    CorrectionSpec,
    CorrectionState,
    Scope,
    TargetState,
    WorkloadOutcome,
)
from backstop.core.settings import ControllerSettings
from tests.controller.conftest import Clock, RecordingLink


def _request(action: Action = Action.PAUSE, scope: Scope | None = None) -> CreateRequest:
    return CreateRequest(action=action, scope=scope or Scope(all=True), reason="r", issuer="alice")


def _ack(c: CorrectionSpec, seq: int, state: TargetState = TargetState.APPLIED) -> CommandAck:
    return CommandAck(
        c.correction_id, seq, state, "done", (WorkloadOutcome("wl", (1,), "applied"),)
    )


def test_dispatch_to_connected_and_mark_disconnected_unreachable(
    engine: CorrectionsEngine,
) -> None:
    links = [RecordingLink("n1"), RecordingLink("n2")]
    for link in links:
        engine.attach(link)
    created = engine.create(_request())
    assert created.state is CorrectionState.DISPATCHED
    states = {t.node_id: t.state for t in created.targets}
    assert states == {
        "n1": TargetState.DISPATCHED,
        "n2": TargetState.DISPATCHED,
        "n3": TargetState.UNREACHABLE,
    }
    for link in links:
        seq, sent = link.sent[0]
        assert sent.correction_id == created.spec.correction_id
        engine.on_ack(link.node_id, _ack(sent, seq))
    # n3 is unreachable, not final: delivery goes on until the correction expires
    engine.check_deadlines()  # the periodic pass stores the summary the acks left stale
    waiting = engine.get(created.spec.correction_id)
    assert waiting.state is CorrectionState.DISPATCHED
    assert waiting.message == (
        "2 applied, 1 unreachable; waiting for n3 (delivery tried until 1970-01-01T01:16:40Z)"
    )
    assert waiting.completed_at_s is None
    n3 = RecordingLink("n3")
    engine.attach(n3)
    assert engine.redeliver("n3") == 1
    seq, sent = n3.sent[0]
    engine.on_ack("n3", _ack(sent, seq))
    done = engine.get(created.spec.correction_id)
    assert done.state is CorrectionState.COMPLETED
    assert done.message == "3 applied"
    assert done.completed_at_s is not None


def test_failed_ack_fails_the_correction(engine: CorrectionsEngine) -> None:
    link = RecordingLink("n1")
    engine.attach(link)
    created = engine.create(_request(scope=Scope(node_ids=("n1",))))
    seq, sent = link.sent[0]
    engine.on_ack("n1", _ack(sent, seq, TargetState.FAILED))
    assert engine.get(created.spec.correction_id).state is CorrectionState.FAILED


def test_no_ack_before_deadline_makes_target_unreachable_and_late_ack_counts(
    engine: CorrectionsEngine, clock: Clock
) -> None:
    link = RecordingLink("n1")
    engine.attach(link)
    created = engine.create(_request(scope=Scope(node_ids=("n1",))))
    clock.now += 4.0
    engine.check_deadlines()
    assert engine.get(created.spec.correction_id).targets[0].state is TargetState.DISPATCHED
    clock.now += 2.0
    engine.check_deadlines()
    late = engine.get(created.spec.correction_id)
    assert late.targets[0].state is TargetState.UNREACHABLE
    assert late.targets[0].message.startswith("no acknowledgement within 5 s; delivery tried")
    assert late.state is CorrectionState.DISPATCHED
    seq, sent = link.sent[0]
    engine.on_ack("n1", _ack(sent, seq))
    done = engine.get(created.spec.correction_id)
    assert done.targets[0].state is TargetState.APPLIED
    assert done.state is CorrectionState.COMPLETED


def test_reconnecting_agent_gets_unacknowledged_commands(engine: CorrectionsEngine) -> None:
    created = engine.create(_request(scope=Scope(node_ids=("n1",))))
    assert created.targets[0].state is TargetState.UNREACHABLE
    link = RecordingLink("n1")
    engine.attach(link)
    assert engine.redeliver("n1") == 1
    assert link.sent[0][1].correction_id == created.spec.correction_id
    assert engine.get(created.spec.correction_id).targets[0].state is TargetState.DISPATCHED
    again = RecordingLink("n1")  # a new stream: still unacknowledged, so sent again
    engine.attach(again)
    assert engine.redeliver("n1") == 1
    seq, sent = again.sent[0]
    engine.on_ack("n1", _ack(sent, seq))
    engine.attach(RecordingLink("n1"))
    assert engine.redeliver("n1") == 0


def test_resume_reverts_the_original(engine: CorrectionsEngine) -> None:
    link = RecordingLink("n1")
    engine.attach(link)
    paused = engine.create(_request(scope=Scope(node_ids=("n1",))))
    seq, sent = link.sent[-1]
    engine.on_ack("n1", _ack(sent, seq))
    resumed = engine.resume(paused.spec.correction_id, "all clear", "bob")
    assert resumed.spec.action is Action.RESUME
    assert resumed.spec.reverts == paused.spec.correction_id
    seq, sent = link.sent[-1]
    engine.on_ack("n1", _ack(sent, seq))
    assert engine.get(paused.spec.correction_id).state is CorrectionState.REVERTED
    with pytest.raises(Conflict, match="already reverted"):
        engine.resume(paused.spec.correction_id, "", "bob")


def test_terminate_cannot_be_resumed(engine: CorrectionsEngine) -> None:
    done = engine.create(_request(Action.TERMINATE))
    with pytest.raises(Conflict, match="cannot be undone"):
        engine.resume(done.spec.correction_id, "", "bob")


def test_bad_requests_change_nothing(engine: CorrectionsEngine, store: Store) -> None:
    with pytest.raises(NotFound, match="unknown node"):
        engine.create(_request(scope=Scope(node_ids=("ghost",))))
    with pytest.raises(InvalidInput, match="empty scope"):
        engine.create(_request(scope=Scope()))
    with pytest.raises(InvalidInput, match="reason is required"):
        engine.create(CreateRequest(Action.PAUSE, Scope(all=True), "  ", "alice"))
    with pytest.raises(InvalidInput, match="use resume"):
        engine.create(_request(Action.RESUME))
    with pytest.raises(NotFound):
        engine.get("cor-nope")
    assert store.list_corrections() == []


def test_zero_targets_completes_at_once(store: Store, clock: Clock) -> None:
    engine = CorrectionsEngine(store, ControllerSettings(), clock=clock)
    created = engine.create(_request())
    assert created.state is CorrectionState.COMPLETED
    assert created.message == "no nodes in scope; nothing to do"


def test_a_second_stream_of_a_node_closes_the_first(engine: CorrectionsEngine) -> None:
    first, second = RecordingLink("n1"), RecordingLink("n1")
    engine.attach(first)
    engine.attach(second)
    assert first.closed
    assert not engine.detach(first)
    assert engine.connected("n1")
    assert engine.detach(second)
    assert not engine.connected("n1")


def test_watch_yields_each_change_until_terminal(engine: CorrectionsEngine) -> None:
    async def scenario() -> list[CorrectionState]:
        link = RecordingLink("n1")
        engine.attach(link)
        created = engine.create(_request(scope=Scope(node_ids=("n1",))))
        seen: list[CorrectionState] = []

        async def watch() -> None:
            async for c in engine.watch(created.spec.correction_id):
                seen.append(c.state)

        task = asyncio.create_task(watch())
        await asyncio.sleep(0.01)
        seq, sent = link.sent[0]
        engine.on_ack("n1", _ack(sent, seq))
        await asyncio.wait_for(task, 2)
        return seen

    assert asyncio.run(scenario()) == [CorrectionState.DISPATCHED, CorrectionState.COMPLETED]
