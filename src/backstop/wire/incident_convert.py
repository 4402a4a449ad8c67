"""Incidents and their timelines between their records (:mod:`backstop.core.incidents`) and
the control API. What comes from the controller is bounded and checked like every other
received record: lengths, known states and severities."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backstop.api.v1 import control_pb2
from backstop.core.errors import InvalidInput
from backstop.core.incidents import (
    Holding,
    Incident,
    IncidentState,
    Milestones,
    Timeline,
    TimelineEntry,
    severity_of,
)
from backstop.wire.checks import finite, text
from backstop.wire.json_form import message_json

MAX_ENTRIES = 100_000
_MILESTONES = ("detected", "decided", "applied", "recovered")


def incident_to_pb(i: Incident) -> control_pb2.Incident:
    return control_pb2.Incident(
        incident_id=i.incident_id,
        title=i.title,
        severity=i.severity.value,
        state=i.state.value,
        opened_by=i.opened_by,
        opened_at_s=i.opened_s,
        closed_by=i.closed_by,
        closed_at_s=i.closed_s or 0.0,
        summary=i.summary,
    )


def incident_from_pb(msg: control_pb2.Incident) -> Incident:
    try:
        state = IncidentState(msg.state)
    except ValueError:
        raise InvalidInput(f"the controller sent an incident in state {msg.state[:32]!r}") from None
    return Incident(
        incident_id=text(msg.incident_id, "incident id", 64),
        title=text(msg.title, "title", 256),
        severity=severity_of(text(msg.severity, "severity", 32)),
        state=state,
        opened_by=text(msg.opened_by, "opened by", 256),
        opened_s=finite(msg.opened_at_s, "opened_at_s"),
        closed_by=text(msg.closed_by, "closed by", 256),
        closed_s=finite(msg.closed_at_s, "closed_at_s") or None,
        summary=text(msg.summary, "summary", 4096),
    )


def timeline_to_pb(t: Timeline) -> control_pb2.IncidentTimeline:
    milestones = control_pb2.IncidentMilestones()
    for name in _MILESTONES:
        at = getattr(t.milestones, f"{name}_s")
        if at is not None:
            setattr(milestones, f"{name}_at_s", at)
    return control_pb2.IncidentTimeline(
        incident=incident_to_pb(t.incident),
        entries=[
            control_pb2.IncidentEntry(
                happened_at_s=e.at_s, actor=e.actor, kind=e.kind, subject=e.subject, detail=e.detail
            )
            for e in t.entries
        ],
        milestones=milestones,
        in_force=[
            control_pb2.IncidentHolding(
                correction_id=h.correction_id,
                action=h.action,
                state=h.state,
                node_ids=h.node_ids,
                expires_at_s=h.expires_at_s,
            )
            for h in t.in_force
        ],
        correction_ids=t.correction_ids,
    )


def timeline_from_pb(msg: control_pb2.IncidentTimeline) -> Timeline:
    if len(msg.entries) > MAX_ENTRIES:
        raise InvalidInput(f"the controller sent more than {MAX_ENTRIES} timeline entries")
    m = msg.milestones
    times = {
        f"{name}_s": finite(getattr(m, f"{name}_at_s"), name)
        if m.HasField(f"{name}_at_s")
        else None
        for name in _MILESTONES
    }
    return Timeline(
        incident=incident_from_pb(msg.incident),
        entries=tuple(
            TimelineEntry(
                at_s=finite(e.happened_at_s, "entry time"),
                actor=text(e.actor, "actor", 256),
                kind=text(e.kind, "entry kind", 64),
                subject=text(e.subject, "entry subject", 256),
                detail=text(e.detail, "entry detail", 4096),
            )
            for e in msg.entries
        ),
        milestones=Milestones(**times),
        in_force=tuple(
            Holding(
                correction_id=text(h.correction_id, "correction id", 64),
                action=text(h.action, "action", 32),
                state=text(h.state, "state", 32),
                node_ids=tuple(text(n, "node id", 253) for n in h.node_ids),
                expires_at_s=finite(h.expires_at_s, "expires_at_s"),
            )
            for h in msg.in_force
        ),
        correction_ids=tuple(text(c, "correction id", 64) for c in msg.correction_ids),
    )


@dataclass(frozen=True, slots=True)
class ReceivedIncident:
    """An incident as the controller sent it, and its JSON form (``-o json``)."""

    incident: Incident
    json_data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ReceivedTimeline:
    timeline: Timeline
    json_data: dict[str, Any]


def received_incident(msg: control_pb2.Incident) -> ReceivedIncident:
    return ReceivedIncident(incident_from_pb(msg), message_json(msg, "Incident"))


def received_incidents(msg: control_pb2.ListIncidentsResponse) -> list[ReceivedIncident]:
    return [received_incident(i) for i in msg.incidents]


def received_timeline(msg: control_pb2.IncidentTimeline) -> ReceivedTimeline:
    return ReceivedTimeline(timeline_from_pb(msg), message_json(msg, "IncidentTimeline"))
