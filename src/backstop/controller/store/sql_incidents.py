"""Incidents, as both SQL backends keep them (tables and indexes of migration 8).

An incident is one row of ``incidents``; closing it is a locked read-then-write, so it closes
once. What belongs to an incident is found by index, never by reading everything: its
corrections by the ``incident`` column (copied from the signed spec when the correction is
stored) and the resumes that undo them by ``reverts``; their audit entries by ``subject``; the
alerts by a narrowing match on their details, confirmed on the decoded details.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

from backstop.controller.store.rows import AUDIT_COLUMNS, audit_from_row
from backstop.controller.store.sql_access import SqlAccess, Statement
from backstop.controller.store.sql_alerts import ALERT_SELECT, alert_from_row
from backstop.core.alerts import Alert
from backstop.core.errors import Conflict, NotFound
from backstop.core.incidents import Incident, IncidentSeverity, IncidentState
from backstop.core.models import Correction
from backstop.security.audit import AuditEntry

_COLUMNS = "incident_id, title, severity, state, opened_by, opened_s, closed_by, closed_s, summary"
_SELECT = f"SELECT {_COLUMNS} FROM incidents"  # noqa: S608


def _incident(row: Sequence[Any]) -> Incident:
    iid, title, severity, state, opened_by, opened_s, closed_by, closed_s, summary = row
    return Incident(
        incident_id=str(iid),
        title=str(title),
        severity=IncidentSeverity(severity),
        state=IncidentState(state),
        opened_by=str(opened_by),
        opened_s=float(opened_s),
        closed_by=str(closed_by),
        closed_s=None if closed_s is None else float(closed_s),
        summary=str(summary),
    )


class SqlIncidents(SqlAccess):
    """The incident half of the store over SQL."""

    @abstractmethod
    def _load_corrections(self, where: str, args: Sequence[object]) -> list[Correction]:
        """The corrections (with their targets) a ``WHERE``/``ORDER BY`` fragment selects."""

    def open_incident(self, incident: Incident) -> bool:
        """Store a new incident; False (nothing changed) when its id exists already."""
        (created,) = self._write(
            (
                f"""INSERT INTO incidents ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, '', NULL, '')
                    ON CONFLICT (incident_id) DO NOTHING""",  # noqa: S608
                (
                    incident.incident_id,
                    incident.title,
                    incident.severity.value,
                    IncidentState.OPEN.value,
                    incident.opened_by,
                    incident.opened_s,
                ),
            )
        )
        return created > 0

    def get_incident(self, incident_id: str) -> Incident | None:
        rows = self._query(f"{_SELECT} WHERE incident_id=?", (incident_id,))
        return _incident(rows[0]) if rows else None

    def list_incidents(self, open_only: bool = False, limit: int = 100) -> list[Incident]:
        """Incidents (only the open ones with ``open_only``), most recently opened first."""
        rows = self._query(
            f"{_SELECT} WHERE (? OR state=?) ORDER BY opened_s DESC, incident_id DESC LIMIT ?",
            (
                not open_only,
                IncidentState.OPEN.value,
                limit if limit > 0 else self.dialect.no_limit,
            ),
        )
        return [_incident(r) for r in rows]

    def close_incident(self, incident_id: str, by: str, summary: str, now_s: float) -> Incident:
        """Close an open incident; ``NotFound``, or ``Conflict`` when it is closed already."""

        def rewrite(rows: list[Any]) -> list[Statement]:
            if not rows:
                raise NotFound(f"no incident {incident_id!r}; see `backstop incident list`")
            if rows[0][0] != IncidentState.OPEN.value:
                raise Conflict(f"incident {incident_id} is closed already")
            return [
                (
                    "UPDATE incidents SET state=?, closed_by=?, closed_s=?, summary=? "
                    "WHERE incident_id=?",
                    (IncidentState.CLOSED.value, by, now_s, summary, incident_id),
                )
            ]

        self._rewrite("SELECT state FROM incidents WHERE incident_id=?", (incident_id,), rewrite)
        closed = self.get_incident(incident_id)
        assert closed is not None  # noqa: S101 - just written; incidents are never deleted
        return closed

    def incident_corrections(self, incident_id: str) -> list[Correction]:
        """The corrections naming the incident and the resumes undoing them, oldest first."""
        return self._load_corrections(
            """WHERE incident=? OR reverts IN
                   (SELECT correction_id FROM corrections WHERE incident=?)
               ORDER BY created_at_s, correction_id""",
            (incident_id, incident_id),
        )

    def incident_alerts(self, incident_id: str) -> list[Alert]:
        """The alerts whose details name the incident, oldest first."""
        rows = self._query(
            f"{ALERT_SELECT} WHERE details LIKE ? ORDER BY raised_s, alert_id",
            (f"%{incident_id}%",),
        )
        found = (alert_from_row(r) for r in rows)
        return [a for a in found if a.details.get("incident") == incident_id]

    def audit_about(self, subjects: Sequence[str]) -> list[AuditEntry]:
        """The audit entries about any of ``subjects``, oldest first."""
        if not subjects:
            return []
        among, args = self.dialect.in_list("subject", list(subjects))
        rows = self._query(
            f"SELECT {AUDIT_COLUMNS} FROM audit WHERE {among} ORDER BY seq",  # noqa: S608
            args,
        )
        return [audit_from_row(r) for r in rows]
