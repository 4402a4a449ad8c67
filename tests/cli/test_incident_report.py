"""The post-incident report from a timeline of known times: the durations from the opening,
and no recorded text able to change how the Markdown renders."""

from __future__ import annotations

from backstop.cli.incident_report import report_json, report_markdown
from backstop.core.incidents import (
    Holding,
    Incident,
    IncidentSeverity,
    IncidentState,
    Milestones,
    Timeline,
    TimelineEntry,
)

HOSTILE = "pwn\x1b[2J | `x` \u202e"


def _timeline() -> Timeline:
    incident = Incident(
        "inc-00000000000000aa", HOSTILE, IncidentSeverity.CRITICAL, IncidentState.OPEN, "alice",
        1000.0,
    )  # fmt: skip
    return Timeline(
        incident=incident,
        entries=(
            TimelineEntry(1000.0, "alice", "opened", incident.incident_id, HOSTILE),
            TimelineEntry(1004.0, "agent:n1", "target", "cor-1", "pause applied on n1"),
        ),
        milestones=Milestones(detected_s=1001.0, decided_s=1002.5, applied_s=1004.0),
        in_force=(Holding("cor-1", "pause", "completed", ("n1",), 4600.0),),
    )


def test_the_report_gives_each_duration_from_the_opening() -> None:
    data = report_json(_timeline(), {"apiVersion": "backstop.io/v1", "kind": "X"}, 2000.0)
    assert data["kind"] == "IncidentReport"
    assert data["durations"] == {
        "time_to_detect_s": 1.0,
        "time_to_decide_s": 2.5,
        "time_to_apply_s": 4.0,
        "time_to_recover_s": None,
    }
    markdown = report_markdown(_timeline(), 2000.0)
    assert "| Decide | the first correction approved | 2.5 s |" in markdown
    assert "| Recover | the resumes completed, or the close | not reached | - |" in markdown
    assert "`cor-1` pause (completed) on n1" in markdown


def test_recorded_text_is_escaped_in_the_markdown() -> None:
    markdown = report_markdown(_timeline(), 2000.0)
    assert "\x1b" not in markdown
    assert "\u202e" not in markdown
    assert "pwn\\x1b[2J \\| \\`x\\` \\u202e" in markdown
