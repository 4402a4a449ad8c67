"""Incidents at the controller: a correction joins only an open incident it names (signed in
its spec); the timeline lists every step with its time and actor, and the milestones (detect,
decide, apply, recover) come out exactly from known times."""

from __future__ import annotations

from dataclasses import replace

import pytest

from backstop.controller.corrections import CorrectionsEngine, CreateRequest
from backstop.controller.incident_book import IncidentBook
from backstop.controller.incident_timeline import assemble
from backstop.controller.store import Store
from backstop.core.alerts import Alert, AlertState
from backstop.core.errors import InvalidInput, NotFound
from backstop.core.incidents import Incident, IncidentSeverity, IncidentState
from backstop.core.models import (
    Action,
    Correction,
    CorrectionState,
    Scope,
    TargetResult,
    TargetState,
)
from backstop.security.audit import AuditEntry
from tests.controller.conftest import Clock, RecordingLink, spec
from tests.controller.test_corrections import _ack

ON_N1 = Scope(node_ids=("n1",))


def _pause(incident: str) -> CreateRequest:
    return CreateRequest(Action.PAUSE, ON_N1, "leaked weights", "alice", incident=incident)


def test_an_incident_from_opening_to_recovery(
    engine: CorrectionsEngine, store: Store, clock: Clock
) -> None:
    book = IncidentBook(store, engine.records)
    link = RecordingLink("n1")
    engine.attach(link)
    incident = book.open("weights leaked", "critical", "alice")
    with pytest.raises(NotFound, match="no incident"):
        engine.create(_pause("inc-ffffffffffffffff"))

    clock.now = 1010.0
    paused = engine.create(_pause(incident.incident_id))
    assert paused.spec.incident == incident.incident_id
    clock.now = 1013.0
    engine.on_ack("n1", _ack(paused.spec, link.sent[-1][0]))
    clock.now = 1020.0
    resumed = engine.resume(paused.spec.correction_id, "contained", "bob")
    clock.now = 1022.0
    engine.on_ack("n1", _ack(resumed.spec, link.sent[-1][0]))
    assert engine.get(paused.spec.correction_id).state is CorrectionState.REVERTED
    clock.now = 1030.0
    closed = book.close(incident.incident_id, "copy removed", "bob")
    assert (closed.state, closed.closed_by, closed.closed_s) == (IncidentState.CLOSED, "bob", 1030)

    timeline = book.timeline(incident.incident_id)
    steps = [(e.at_s, e.actor, e.kind) for e in timeline.entries]
    assert steps == [
        (1000.0, "alice", "opened"),
        (1010.0, "alice", "decided"),
        (1010.0, "controller", "dispatched"),
        (1013.0, "agent:n1", "target"),
        (1013.0, "controller", "settled"),
        (1020.0, "bob", "resume"),
        (1020.0, "controller", "dispatched"),
        (1022.0, "agent:n1", "target"),
        (1022.0, "controller", "settled"),
        (1022.0, "controller", "reverted"),
        (1030.0, "bob", "closed"),
    ]
    assert timeline.milestones.durations(1000.0) == {
        "time_to_detect_s": 10.0,
        "time_to_decide_s": 10.0,
        "time_to_apply_s": 13.0,
        "time_to_recover_s": 22.0,
    }
    assert timeline.in_force == ()
    assert timeline.correction_ids == (paused.spec.correction_id, resumed.spec.correction_id)

    audited = [(e.action, e.subject) for e in store.list_audit()]
    assert ("incident.open", incident.incident_id) in audited
    assert ("incident.close", incident.incident_id) in audited
    with pytest.raises(InvalidInput, match="is closed"):
        engine.create(_pause(incident.incident_id))
    with pytest.raises(InvalidInput, match="closed already"):
        book.close(incident.incident_id, "again", "bob")
    assert store.list_audit()[-1].action == "incident.close_refused"
    with pytest.raises(InvalidInput, match="malformed incident id"):
        engine.create(_pause("4411"))


def _audit(ts: float, actor: str, action: str, subject: str, **details: object) -> AuditEntry:
    return AuditEntry(0, ts, actor, action, subject, details)


def test_a_quorum_decides_at_its_last_approval_and_what_holds_stays_in_force() -> None:
    incident = Incident(
        "inc-00000000000000aa", "t", IncidentSeverity.INFO, IncidentState.OPEN, "alice", 100.0
    )
    pause = replace(spec("cor-1"), incident=incident.incident_id, created_at_s=110.0)
    targets = (
        TargetResult("n1", TargetState.APPLIED, updated_at_s=118.0),
        TargetResult("n2", TargetState.UNREACHABLE, updated_at_s=117.0),
    )
    correction = Correction(pause, CorrectionState.DISPATCHED, targets)
    alert = Alert(
        "alr-1", "p/w", "p", 1, "warning", "n1", "w", "seen", {}, AlertState.ACKNOWLEDGED,
        raised_s=105.0, last_seen_s=106.0, acked_by="carol", acked_s=107.0,
    )  # fmt: skip
    audit = [
        _audit(110.0, "alice", "correction.propose", "cor-1"),
        _audit(112.0, "bob", "correction.approve", "cor-1", approvals="1 of 2"),
        _audit(115.0, "carol", "correction.approve", "cor-1", approvals="2 of 2"),
        _audit(116.0, "controller", "correction.dispatch", "cor-1", nodes=["n1", "n2"]),
        _audit(116.5, "controller", "command.redeliver", "cor-1"),  # not a step shown
    ]
    timeline = assemble(incident, [correction], audit, [alert], now_s=200.0)
    assert [(e.at_s, e.actor, e.kind, e.detail) for e in timeline.entries] == [
        (100.0, "alice", "opened", "info: t"),
        (105.0, "policy:p", "alert", "seen"),
        (107.0, "carol", "alert.acknowledged", ""),
        (110.0, "alice", "proposed", "pause: test"),
        (112.0, "bob", "approved", "1 of 2"),
        (115.0, "carol", "approved", "2 of 2"),
        (116.0, "controller", "dispatched", "to n1, n2"),
        (117.0, "agent:n2", "target", "pause unreachable on n2"),
        (118.0, "agent:n1", "target", "pause applied on n1"),
    ]
    m = timeline.milestones
    assert (m.detected_s, m.decided_s, m.applied_s, m.recovered_s) == (105.0, 115.0, None, None)
    (held,) = timeline.in_force
    assert (held.correction_id, held.state, held.node_ids) == ("cor-1", "dispatched", ("n1", "n2"))
    assert assemble(incident, [correction], audit, [alert], now_s=20_000.0).in_force == ()
