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
    SignatureRecord,
    TargetState,
    WorkloadOutcome,
)
from backstop.core.settings import ControllerSettings
from backstop.wire import convert
from tests.controller.conftest import node


class RecordingLink:
    """An agent stream's outgoing side that records what it was sent."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.sent: list[tuple[int, CorrectionSpec]] = []
        self.closed = ""

    def send_command(
        self, sequence: int, spec_bytes: bytes, signatures: tuple[SignatureRecord, ...]
    ) -> None:
        self.sent.append((sequence, convert.spec_from_bytes(spec_bytes)))

    def close(self, reason: str) -> None:
        self.closed = reason


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def engine(store: Store, clock: Clock) -> CorrectionsEngine:
    for n in ("n1", "n2", "n3"):
        store.upsert_node(node(n), clock.now)
    return CorrectionsEngine(store, ControllerSettings(ack_timeout_s=5.0), clock=clock)


def _request(action: Action = Action.PAUSE, scope: Scope | None = None) -> CreateRequest:
    return CreateRequest(action=action, scope=scope or Scope(all=True), reason="r", issuer="alice")


def _ack(c: CorrectionSpec, seq: int, state: TargetState = TargetState.APPLIED) -> CommandAck:
    return CommandAck(
        c.correction_id, seq, state, "done", (WorkloadOutcome("wl", (1,), "applied"),)
    )


def test_dispatch_to_connected_and_mark_disconnected_unreachable(engine: CorrectionsEngine) -> None:
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
    done = engine.get(created.spec.correction_id)
    assert done.state is CorrectionState.COMPLETED
    assert done.message == "2 applied, 1 unreachable"
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
    assert late.state is CorrectionState.COMPLETED
    seq, sent = link.sent[0]
    engine.on_ack("n1", _ack(sent, seq))
    assert engine.get(created.spec.correction_id).targets[0].state is TargetState.APPLIED


def test_reconnecting_agent_gets_unacknowledged_commands(engine: CorrectionsEngine) -> None:
    created = engine.create(_request(scope=Scope(node_ids=("n1",))))
    assert created.targets[0].state is TargetState.UNREACHABLE
    link = RecordingLink("n1")
    engine.attach(link)
    assert engine.redeliver("n1", after_sequence=0) == 1
    assert link.sent[0][1].correction_id == created.spec.correction_id
    assert engine.get(created.spec.correction_id).targets[0].state is TargetState.DISPATCHED
    assert engine.redeliver("n1", after_sequence=link.sent[0][0]) == 0


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
