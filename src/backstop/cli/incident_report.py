"""The post-incident report: what ``backstop incident report`` writes, as JSON and Markdown,
from an incident's timeline.

Both forms hold the incident, its four milestones and the durations to them from the opening
(to detect, to decide, to apply on every target, to recover), what is still in force and
every step of the timeline. The JSON is the timeline's own JSON form (``docs/json.md``) with
the durations added, as kind ``IncidentReport``. In the Markdown every text that came from
people or workloads is escaped (controls made visible, ``|`` and backticks quoted), so a
report cannot be made to render what its records do not say.
"""

from __future__ import annotations

from typing import Any

from backstop.cli.render import escape
from backstop.core import times
from backstop.core.incidents import Timeline
from backstop.wire.json_form import document

PHASES = (
    ("time_to_detect_s", "detected_s", "Detect", "the first alert or correction"),
    ("time_to_decide_s", "decided_s", "Decide", "the first correction approved"),
    ("time_to_apply_s", "applied_s", "Apply", "the last target applied"),
    ("time_to_recover_s", "recovered_s", "Recover", "the resumes completed, or the close"),
)


def report_json(timeline: Timeline, timeline_json: dict[str, Any], now_s: float) -> dict[str, Any]:
    fields = {k: v for k, v in timeline_json.items() if k not in ("apiVersion", "kind")}
    fields["durations"] = timeline.milestones.durations(timeline.incident.opened_s)
    fields["generated_at_s"] = now_s
    fields["generated_at"] = times.rfc3339(now_s, milliseconds=True)
    return document("IncidentReport", fields)


def report_markdown(timeline: Timeline, now_s: float) -> str:
    i = timeline.incident
    durations = timeline.milestones.durations(i.opened_s)
    lines = [
        f"# Incident {_md(i.incident_id)}: {_md(i.title)}",
        "",
        f"- Severity: {i.severity.value}",
        f"- State: {i.state.value}",
        f"- Opened: {_when(i.opened_s)} by {_md(i.opened_by)}",
        f"- Closed: {_when(i.closed_s)} by {_md(i.closed_by)}" if i.closed_s else "- Closed: no",
        f"- Summary: {_md(i.summary) or '-'}",
        f"- Report written: {_when(now_s)}",
        "",
        "## Response times (from the opening)",
        "",
        "| phase | reached | after | when |",
        "|---|---|---|---|",
    ]
    for key, attribute, phase, what in PHASES:
        at = getattr(timeline.milestones, attribute)
        lines.append(f"| {phase} | {what} | {_seconds(durations[key])} | {_when(at)} |")
    lines += ["", "## Still in force", ""]
    if not timeline.in_force:
        lines.append("Nothing: every correction of the incident was undone, failed or expired.")
    for h in timeline.in_force:
        nodes = ", ".join(_md(n) for n in h.node_ids) or "-"
        lines.append(
            f"- `{_md(h.correction_id)}` {h.action} ({_md(h.state)}) on {nodes}, "
            f"until {_when(h.expires_at_s)}"
        )
    lines += ["", "## Timeline", "", "| when | actor | step | subject | detail |"]
    lines.append("|---|---|---|---|---|")
    for e in timeline.entries:
        cells = (_when(e.at_s), _md(e.actor), _md(e.kind), _md(e.subject), _md(e.detail))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return escape(text).replace("|", "\\|").replace("`", "\\`")


def _when(at: float | None) -> str:
    return "-" if at is None else times.rfc3339(at, milliseconds=True)


def _seconds(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.1f} s"
