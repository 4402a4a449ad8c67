"""An incident's timeline, milestones and what of it is still in force, assembled from what
the store keeps: the incident's row (opened, closed), the alerts naming it, the audit entries
about its corrections (decided, approved and by whom, dispatched, settled, undone) and each
correction's targets (their outcome on each node, when it last changed).

Pure: :func:`assemble` takes the records and the time now, so a timeline computed from known
times can be checked exactly. Milestones follow ``backstop.core.incidents``: detected (first
alert or correction), decided (first correction approved, at once or by its last approval),
applied (the last target of its corrections applied, once every one is), recovered (the last
resume completed once every resume has, or else the close).
"""

from __future__ import annotations

from collections.abc import Sequence

from backstop.core.alerts import Alert
from backstop.core.incidents import Holding, Incident, Milestones, Timeline, TimelineEntry
from backstop.core.models import Action, Correction, CorrectionState, TargetState
from backstop.security.audit import AuditEntry

KINDS = {
    "correction.propose": "proposed",
    "correction.create": "decided",
    "correction.approve": "approved",
    "correction.refused": "refused",
    "approval.refused": "refused",
    "correction.dispatch": "dispatched",
    "correction.settle": "settled",
    "correction.reverted": "reverted",
    "correction.expired": "expired",
}
"""The audit actions a timeline shows, by the kind of entry each makes (acks show as the
targets' outcomes, redeliveries not at all)."""
AFTER_OUTCOMES = {"target": 1, "settled": 2, "reverted": 2, "expired": 2, "closed": 3}
"""Of steps recorded at the same time, a target's outcome comes after what was sent and
before what the controller concluded from it."""
IN_FORCE = (CorrectionState.APPROVED, CorrectionState.DISPATCHED, CorrectionState.COMPLETED)


def assemble(
    incident: Incident,
    corrections: Sequence[Correction],
    audit: Sequence[AuditEntry],
    alerts: Sequence[Alert],
    now_s: float,
) -> Timeline:
    """The timeline of ``incident`` from its corrections (resumes among them), the audit
    entries about them and its alerts; in force as of ``now_s``."""
    by_id = {c.spec.correction_id: c for c in corrections}
    entries = [
        TimelineEntry(incident.opened_s, incident.opened_by, "opened", incident.incident_id,
                      f"{incident.severity.value}: {incident.title}"),
        *_alert_entries(alerts),
        *(_audit_entry(e, by_id) for e in audit if e.action in KINDS and e.subject in by_id),
        *(
            TimelineEntry(t.updated_at_s, f"agent:{t.node_id}", "target", c.spec.correction_id,
                          _target_line(c, t.node_id, t.state.value, t.message))
            for c in corrections for t in c.targets
        ),
    ]  # fmt: skip
    if incident.closed_s is not None:
        entries.append(
            TimelineEntry(incident.closed_s, incident.closed_by, "closed", incident.incident_id,
                          incident.summary)
        )  # fmt: skip
    entries.sort(key=lambda e: (e.at_s, AFTER_OUTCOMES.get(e.kind, 0)))  # stable otherwise
    return Timeline(
        incident=incident,
        entries=tuple(entries),
        milestones=milestones(incident, corrections, audit, alerts),
        in_force=in_force(corrections, now_s),
        correction_ids=tuple(by_id),
    )


def milestones(
    incident: Incident,
    corrections: Sequence[Correction],
    audit: Sequence[AuditEntry],
    alerts: Sequence[Alert],
) -> Milestones:
    acting = [c for c in corrections if c.spec.action is not Action.RESUME]
    resumes = [c for c in corrections if c.spec.action is Action.RESUME]
    acting_ids = {c.spec.correction_id for c in acting}
    signs = [a.raised_s for a in alerts] + [c.spec.created_at_s for c in corrections]
    decisions = [e.ts for e in audit if e.subject in acting_ids and _decides(e)]
    targets = [t for c in acting for t in c.targets]
    applied = (
        max(t.updated_at_s for t in targets)
        if targets and all(t.state is TargetState.APPLIED for t in targets)
        else None
    )
    done = [c.completed_at_s for c in resumes if c.state is CorrectionState.COMPLETED]
    recovered = (
        max(t for t in done if t is not None)
        if resumes and len(done) == len(resumes) and all(t is not None for t in done)
        else incident.closed_s
    )
    return Milestones(
        detected_s=min(signs, default=None),
        decided_s=min(decisions, default=None),
        applied_s=applied,
        recovered_s=recovered,
    )


def in_force(corrections: Sequence[Correction], now_s: float) -> tuple[Holding, ...]:
    """The incident's corrections (not resumes) approved and not undone, failed or expired."""
    return tuple(
        Holding(
            correction_id=c.spec.correction_id,
            action=c.spec.action.value,
            state=c.state.value,
            node_ids=tuple(t.node_id for t in c.targets),
            expires_at_s=c.spec.expires_at_s,
        )
        for c in corrections
        if c.spec.action is not Action.RESUME
        and c.state in IN_FORCE
        and c.spec.expires_at_s > now_s
    )


def _decides(entry: AuditEntry) -> bool:
    """Whether the entry is a correction becoming approved: created approved, released, or
    approved by its last required approval."""
    if entry.action == "correction.create":
        return True
    if entry.action != "correction.approve":
        return False
    if "released" in entry.details:
        return True
    counted, _, required = str(entry.details.get("approvals", "")).partition(" of ")
    return counted.isdigit() and required.isdigit() and int(counted) >= int(required)


def _alert_entries(alerts: Sequence[Alert]) -> list[TimelineEntry]:
    entries = []
    for a in alerts:
        actor = f"policy:{a.policy}"
        entries.append(TimelineEntry(a.raised_s, actor, "alert", a.alert_id, a.summary))
        if a.acked_s is not None:
            entries.append(TimelineEntry(a.acked_s, a.acked_by, "alert.acknowledged", a.alert_id))
        if a.resolved_s is not None:
            entries.append(TimelineEntry(a.resolved_s, actor, "alert.resolved", a.alert_id))
    return entries


def _audit_entry(entry: AuditEntry, corrections: dict[str, Correction]) -> TimelineEntry:
    spec = corrections[entry.subject].spec
    kind = KINDS[entry.action]
    if spec.action is Action.RESUME and kind in ("decided", "proposed"):
        kind = "resume"
    details = entry.details
    if kind in ("decided", "proposed", "resume"):
        what = f"resume of {spec.reverts}" if spec.reverts else spec.action.value
        detail = f"{what}: {spec.reason}"
    elif kind == "approved":
        detail = str(details.get("approvals") or details.get("released") or "")
    elif kind == "dispatched":
        detail = "to " + ", ".join(str(n) for n in details.get("nodes", ()))
    else:
        detail = str(details.get("reason") or details.get("state") or details.get("by") or "")
    return TimelineEntry(entry.ts, entry.actor, kind, entry.subject, detail)


def _target_line(correction: Correction, node_id: str, state: str, message: str) -> str:
    what = "resume" if correction.spec.action is Action.RESUME else correction.spec.action.value
    return f"{what} {state} on {node_id}" + (f": {message}" if message else "")
