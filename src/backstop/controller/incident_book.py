"""Incidents at the controller: opening, closing, the checks a correction naming one passes,
and the incident a policy with ``incident: auto`` opens at its first match.

Every change is audited before it is made (``incident.open``, ``incident.close``, a refused
close as ``incident.close_refused``), through the corrections engine's
:class:`~backstop.controller.corrections.records.Records`, like every other decision. The
timeline is assembled by :mod:`backstop.controller.incident_timeline` from what the store
finds by the incident's id.
"""

from __future__ import annotations

from backstop.controller.corrections.records import Records
from backstop.controller.incident_timeline import assemble
from backstop.controller.store.base import Store
from backstop.core.errors import BackstopError, InvalidInput, NotFound
from backstop.core.ids import new_incident_id, policy_incident_id
from backstop.core.incidents import (
    Incident,
    IncidentSeverity,
    IncidentState,
    Timeline,
    severity_of,
    validate_incident_id,
    validate_summary,
    validate_title,
)


def require_open(store: Store, incident_id: str) -> Incident:
    """The open incident ``incident_id``; :class:`NotFound` for an unknown one,
    :class:`InvalidInput` for a closed one (a correction cannot join it)."""
    found = store.get_incident(validate_incident_id(incident_id))
    if found is None:
        raise NotFound(f"no incident {incident_id!r}; open one with `backstop incident open`")
    if found.state is not IncidentState.OPEN:
        raise InvalidInput(
            f"incident {incident_id} is closed; open a new one with `backstop incident open`"
        )
    return found


class IncidentBook:
    def __init__(self, store: Store, records: Records) -> None:
        self._store = store
        self._records = records

    def open(self, title: str, severity: str, by: str) -> Incident:
        incident = Incident(
            incident_id=new_incident_id(),
            title=validate_title(title),
            severity=severity_of(severity),
            state=IncidentState.OPEN,
            opened_by=by,
            opened_s=self._records.clock(),
        )
        self._records.audit(
            by, "incident.open", incident.incident_id,
            title=incident.title, severity=incident.severity.value,
        )  # fmt: skip
        self._store.open_incident(incident)
        return incident

    def for_policy(self, name: str, version: int, digest: str) -> Incident:
        """The incident of a policy version with ``incident: auto``, opened by its first
        match (by the policy, under an id every replica derives from the version's digest)."""
        incident_id = policy_incident_id(digest)
        found = self._store.get_incident(incident_id)
        if found is not None:
            return found
        incident = Incident(
            incident_id=incident_id,
            title=f"policy {name} v{version} matched",
            severity=IncidentSeverity.WARNING,
            state=IncidentState.OPEN,
            opened_by=f"policy:{name}",
            opened_s=self._records.clock(),
        )
        self._records.audit(
            incident.opened_by, "incident.open", incident_id,
            title=incident.title, severity=incident.severity.value, digest=digest,
        )  # fmt: skip
        if self._store.open_incident(incident):
            return incident
        return self.get(incident_id)  # opened meanwhile through another replica

    def close(self, incident_id: str, summary: str, by: str) -> Incident:
        try:
            text = validate_summary(summary)
            current = self.get(incident_id)
            if current.state is not IncidentState.OPEN:
                raise InvalidInput(f"incident {incident_id} is closed already")
        except BackstopError as exc:
            self._records.audit(by, "incident.close_refused", incident_id, reason=exc.message)
            raise
        self._records.audit(by, "incident.close", incident_id, summary=text)
        return self._store.close_incident(incident_id, by, text, self._records.clock())

    def list(self, open_only: bool, limit: int) -> list[Incident]:
        return self._store.list_incidents(open_only, limit)

    def get(self, incident_id: str) -> Incident:
        found = self._store.get_incident(validate_incident_id(incident_id))
        if found is None:
            raise NotFound(f"no incident {incident_id!r}; see `backstop incident list`")
        return found

    def timeline(self, incident_id: str) -> Timeline:
        incident = self.get(incident_id)
        corrections = self._store.incident_corrections(incident_id)
        audit = self._store.audit_about([c.spec.correction_id for c in corrections])
        alerts = self._store.incident_alerts(incident_id)
        return assemble(incident, corrections, audit, alerts, self._records.clock())
