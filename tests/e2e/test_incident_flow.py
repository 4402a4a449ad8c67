"""An incident end to end with real processes: opened from the CLI, a real model server paused
under it and resumed, the incident closed and its report written; every step is in the
timeline with its time and actor, and the four durations are the ones the records give. A
correction naming an unknown or closed incident is refused. A policy with ``incident: auto``
opens one at its first match and its alert and correction join it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from backstop.agent.weights.identify import identify
from tests.e2e.conftest import Nodes
from tests.e2e.test_policy_flow import _one_file, _serve, _start
from tests.support.cluster import LocalCluster, proc_state, wait_for

pytestmark = pytest.mark.e2e

UNKNOWN = "inc-ffffffffffffffff"


def _steps(timeline: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["kind"], e["actor"]) for e in timeline["entries"]]


def test_an_incident_from_opening_to_report(nodes: Nodes, tmp_path: Path) -> None:
    cluster = nodes.cluster
    opened = cluster.json("incident", "open", "--title", "weights leaked", "--severity", "critical")
    assert (opened["kind"], opened["state"], opened["opened_by"]) == ("Incident", "open", "e2e")
    iid = opened["incident_id"]
    assert iid.startswith("inc-")

    refused = cluster.cli("pause", "--node", "node-a", "--reason", "x", "--incident", UNKNOWN)
    assert refused.code == 4, refused.err
    assert f"no incident '{UNKNOWN}'" in refused.err

    pause = ("pause", "--node", "node-a", "--reason", "leak", "--incident", iid, "--wait")
    paused = cluster.cli(*pause, "-o", "json")
    assert paused.code == 0, paused.err
    correction = paused.json()
    assert correction["spec"]["incident"] == iid
    assert nodes.a.ask(timeout_s=1.0) is None  # frozen
    cid = correction["spec"]["correction_id"]
    resumed = cluster.cli("resume", cid, "--reason", "contained", "--wait", "-o", "json")
    assert resumed.code == 0, resumed.err
    assert nodes.a.ask() is not None
    resume = resumed.json()
    closed = cluster.json("incident", "close", iid, "--summary", "copy removed")
    assert (closed["state"], closed["closed_by"], closed["summary"]) == (
        "closed",
        "e2e",
        "copy removed",
    )

    shown = cluster.json("incident", "show", iid)
    assert shown["kind"] == "IncidentTimeline"
    assert _steps(shown) == [
        ("opened", "e2e"),
        ("decided", "e2e"),
        ("dispatched", "controller"),
        ("target", "agent:node-a"),
        ("settled", "controller"),
        ("resume", "e2e"),
        ("dispatched", "controller"),
        ("target", "agent:node-a"),
        ("settled", "controller"),
        ("reverted", "controller"),
        ("closed", "e2e"),
    ]
    at = [e["happened_at_s"] for e in shown["entries"]]
    assert at == sorted(at)
    assert all(e["happened_at"] for e in shown["entries"])  # each with its RFC 3339 twin
    (applied,) = correction["targets"]
    (undone,) = resume["targets"]
    assert at[0] == opened["opened_at_s"]
    assert at[3] == applied["updated_at_s"]
    assert at[7] == undone["updated_at_s"]
    assert at[-1] == closed["closed_at_s"]
    assert shown["correction_ids"] == [cid, resume["spec"]["correction_id"]]
    assert shown["in_force"] == []

    made = cluster.cli("incident", "report", iid, "--out", str(tmp_path), "-o", "json")
    assert made.code == 0, made.err
    report = json.loads((tmp_path / f"{iid}.json").read_text())
    assert report["kind"] == "IncidentReport"
    start = opened["opened_at_s"]
    assert report["durations"] == {
        "time_to_detect_s": correction["spec"]["created_at_s"] - start,
        "time_to_decide_s": at[1] - start,
        "time_to_apply_s": applied["updated_at_s"] - start,
        "time_to_recover_s": resume["completed_at_s"] - start,
    }
    assert 0 < report["durations"]["time_to_apply_s"] < report["durations"]["time_to_recover_s"]
    markdown = (tmp_path / f"{iid}.md").read_text()
    assert f"# Incident {iid}: weights leaked" in markdown
    assert "| Apply | the last target applied |" in markdown

    late = cluster.cli("pause", "--node", "node-a", "--reason", "x", "--incident", iid)
    assert late.code == 2, late.err
    assert "is closed" in late.err
    (listed,) = cluster.json("incident", "list")
    assert listed["incident_id"] == iid
    table = cluster.cli("incident", "show", iid)
    assert table.code == 0, table.err
    assert "time to recover:" in table.out


def test_a_policy_opens_its_own_incident(cluster: LocalCluster, tmp_path: Path) -> None:
    watched = identify([_one_file(tmp_path / "original")]).model_id
    _start(cluster)
    policy = cluster.workdir / "auto.yaml"
    policy.write_text(
        f'name: auto-open\nmatch:\n  model_id: "{watched[:16]}"\naction: pause\nincident: auto\n'
    )
    assert cluster.json("policy", "apply", str(policy))["state"] == "active"
    first = _serve(cluster, "first", tmp_path / "original")
    wait_for(lambda: proc_state(first.pid) == "T", 20, "the copy to be paused")
    second = _serve(cluster, "second", tmp_path / "original")
    wait_for(lambda: proc_state(second.pid) == "T", 20, "the second copy to be paused")

    (incident,) = cluster.json("incident", "list")
    assert incident["opened_by"] == "policy:auto-open"
    assert incident["title"] == "policy auto-open v1 matched"
    iid = incident["incident_id"]

    def linked() -> dict[str, Any] | None:
        shown = cluster.json("incident", "show", iid)
        kinds = [k for k, _ in _steps(shown)]
        return shown if kinds.count("target") == 2 and kinds.count("alert") == 2 else None

    shown = wait_for(linked, 20, "both matches in the incident")
    assert ("alert", "policy:auto-open") in _steps(shown)
    assert ("decided", "policy:auto-open") in _steps(shown)
    assert len(shown["in_force"]) == 2
    assert {a["details"]["incident"] for a in cluster.json("alerts")} == {iid}
    assert {c["spec"]["incident"] for c in cluster.json("corrections")} == {iid}
