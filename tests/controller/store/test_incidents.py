"""Incidents in the store, on every backend: opened once, closed once, and what belongs to one
(its corrections with the resumes undoing them, their audit entries, the alerts naming it)
found by its id."""

from __future__ import annotations

from dataclasses import replace

import pytest

from backstop.controller.store import Store
from backstop.core.alerts import AlertSpec
from backstop.core.errors import Conflict, NotFound
from backstop.core.incidents import Incident, IncidentSeverity, IncidentState
from backstop.core.models import Action, CorrectionState
from tests.controller.conftest import spec

INC = "inc-0123456789abcdef"


def _incident(iid: str = INC, at: float = 10.0) -> Incident:
    return Incident(
        iid, "weights leaked", IncidentSeverity.CRITICAL, IncidentState.OPEN, "alice", at
    )


def test_opened_once_listed_newest_first_and_closed_once(store: Store) -> None:
    assert store.open_incident(_incident())
    assert not store.open_incident(replace(_incident(), title="again"))  # the id is taken
    store.open_incident(_incident("inc-00000000000000ff", 20.0))
    assert [i.incident_id for i in store.list_incidents()] == ["inc-00000000000000ff", INC]
    closed = store.close_incident(INC, "bob", "contained", 30.0)
    assert (closed.state, closed.closed_by, closed.closed_s, closed.summary) == (
        IncidentState.CLOSED,
        "bob",
        30.0,
        "contained",
    )
    assert store.get_incident(INC) == closed
    assert closed.title == "weights leaked"
    assert [i.incident_id for i in store.list_incidents(open_only=True)] == ["inc-00000000000000ff"]
    assert len(store.list_incidents(limit=1)) == 1
    with pytest.raises(Conflict):
        store.close_incident(INC, "bob", "twice", 40.0)
    with pytest.raises(NotFound):
        store.close_incident("inc-ffffffffffffffff", "bob", "x", 40.0)
    assert store.get_incident("inc-ffffffffffffffff") is None


def test_what_belongs_to_an_incident_is_found_by_its_id(store: Store) -> None:
    store.open_incident(_incident())
    linked = replace(spec("cor-1"), incident=INC)
    store.create_correction(linked, CorrectionState.APPROVED, 1.0)
    store.create_correction(spec("cor-2"), CorrectionState.APPROVED, 2.0)  # another one
    resume = replace(spec("cor-3", Action.RESUME), reverts="cor-1", created_at_s=5.0)
    store.create_correction(resume, CorrectionState.APPROVED, 5.0)  # no --incident
    found = store.incident_corrections(INC)
    assert [c.spec.correction_id for c in found] == ["cor-1", "cor-3"]
    assert found[0].spec.incident == INC
    store.append_audit(
        ts=1.0, actor="alice", action="correction.create", subject="cor-1", details={}
    )
    store.append_audit(
        ts=2.0, actor="alice", action="correction.create", subject="cor-2", details={}
    )
    store.append_audit(ts=3.0, actor="bob", action="incident.open", subject=INC, details={})
    about = store.audit_about([INC, "cor-1"])
    assert [(e.subject, e.action) for e in about] == [
        ("cor-1", "correction.create"),
        (INC, "incident.open"),
    ]
    assert store.audit_about([]) == []
    store.raise_alert(AlertSpec("p/w1", "p", "warning", "seen", details={"incident": INC}), 4.0)
    store.raise_alert(AlertSpec("p/w2", "p", "warning", "other", details={"n": INC + "0"}), 4.0)
    store.raise_alert(AlertSpec("q/w1", "q", "warning", "none"), 4.0)
    assert [a.dedup_key for a in store.incident_alerts(INC)] == ["p/w1"]
