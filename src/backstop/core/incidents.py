"""Incidents: one response to one problem under one id, from its first sign to its follow-up.

An incident holds the corrections whose signed spec names it, the alerts raised by a policy
that names it, and what happened to them. Its timeline lists every step (opened, alert,
decided, approved, dispatched, each target's outcome, resume, closed) with its time and actor;
its milestones say when the response reached each phase of a correction as the
deployment-corrections framework has them: detected (monitoring: the first alert or
correction), decided (the first correction approved), applied (execution: the last target
applied) and recovered (recovery: the resumes completed, or else the close); the report
(follow-up) gives each as a duration from the opening. Pure data: the controller assembles a
timeline (``backstop.controller.incident_timeline``).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from backstop.core.errors import InvalidInput
from backstop.core.text import validate_line

AUTO = "auto"
"""A policy's ``incident: auto``: its first match opens an incident named after it."""
MAX_TITLE_LEN = 200
MAX_SUMMARY_LEN = 2000
_ID = re.compile(r"^inc-[0-9a-f]{8,40}$")


class IncidentState(enum.StrEnum):
    OPEN = "open"
    """Corrections may name it."""
    CLOSED = "closed"
    """Over: a correction naming it is refused; its timeline stays."""


class IncidentSeverity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Incident:
    incident_id: str
    title: str
    severity: IncidentSeverity
    state: IncidentState
    opened_by: str
    opened_s: float
    closed_by: str = ""
    closed_s: float | None = None
    summary: str = ""
    """What closing it said."""


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One step: when, who, what kind, which correction, alert or node, and a line."""

    at_s: float
    actor: str
    kind: str
    subject: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Milestones:
    """When the response reached each phase (None: not yet)."""

    detected_s: float | None = None
    decided_s: float | None = None
    applied_s: float | None = None
    recovered_s: float | None = None

    def durations(self, opened_s: float) -> dict[str, float | None]:
        """Seconds from ``opened_s`` to each milestone, by the report's names."""
        return {
            name: None if at is None else at - opened_s
            for name, at in (
                ("time_to_detect_s", self.detected_s),
                ("time_to_decide_s", self.decided_s),
                ("time_to_apply_s", self.applied_s),
                ("time_to_recover_s", self.recovered_s),
            )
        }


@dataclass(frozen=True, slots=True)
class Holding:
    """A correction of the incident still in force."""

    correction_id: str
    action: str
    state: str
    node_ids: tuple[str, ...]
    expires_at_s: float


@dataclass(frozen=True, slots=True)
class Timeline:
    incident: Incident
    entries: tuple[TimelineEntry, ...]
    milestones: Milestones
    in_force: tuple[Holding, ...] = ()
    correction_ids: tuple[str, ...] = ()


def validate_incident_id(incident_id: str) -> str:
    if not _ID.match(incident_id):
        raise InvalidInput(
            f"malformed incident id {incident_id!r} (inc- and hex digits); "
            "see `backstop incident list`"
        )
    return incident_id


def validate_title(title: str) -> str:
    return _line(title, "title", "an incident needs a title (--title): say what is wrong")


def validate_summary(summary: str) -> str:
    return _line(summary, "summary", "closing needs a summary (--summary): say how it ended")


def _line(value: str, what: str, missing: str) -> str:
    value = value.strip()
    if not value:
        raise InvalidInput(missing)
    validate_line(value, what, MAX_SUMMARY_LEN if what == "summary" else MAX_TITLE_LEN)
    return value


def severity_of(word: str) -> IncidentSeverity:
    try:
        return IncidentSeverity(word or IncidentSeverity.WARNING.value)
    except ValueError:
        known = ", ".join(s.value for s in IncidentSeverity)
        raise InvalidInput(f"unknown severity {word!r}; one of {known}") from None
