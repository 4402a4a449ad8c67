"""``backstop incident open|list|show|close|report``: an incident's life, from the CLI.

``show`` prints the timeline (every step with its time and actor, oldest first), then the
milestones and what is still in force; ``report`` writes ``<id>.md`` and ``<id>.json`` into
``--out`` (see :mod:`backstop.cli.incident_report`). Text from people and workloads is escaped
before it reaches the terminal (``render``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from backstop.cli import render
from backstop.cli.client import ControllerClient
from backstop.cli.connect import with_client
from backstop.cli.incident_report import PHASES, report_json, report_markdown
from backstop.cli.operate import user_of
from backstop.cli.output import Layout, dumps, emit
from backstop.core import times
from backstop.core.errors import InvalidInput
from backstop.core.files import write_atomically
from backstop.wire.incident_convert import ReceivedIncident, ReceivedTimeline


def _open(client: ControllerClient, args: argparse.Namespace) -> int:
    opened = client.open_incident(args.title, args.severity, user_of(args))
    return emit(
        args, lambda: opened.json_data, lambda _l: render.escape(opened.incident.incident_id)
    )


def _list(client: ControllerClient, args: argparse.Namespace) -> int:
    found = client.list_incidents(args.open, args.limit)
    return emit(args, lambda: [i.json_data for i in found], lambda lay: _table(found, lay))


def _show(client: ControllerClient, args: argparse.Namespace) -> int:
    shown = client.incident(args.id)
    return emit(args, lambda: shown.json_data, lambda lay: _timeline(shown, lay))


def _close(client: ControllerClient, args: argparse.Namespace) -> int:
    closed = client.close_incident(args.id, args.summary, user_of(args))
    i = closed.incident
    return emit(
        args,
        lambda: closed.json_data,
        lambda _l: f"{render.escape(i.incident_id)} closed by {render.escape(i.closed_by)}",
    )


def _report(client: ControllerClient, args: argparse.Namespace) -> int:
    shown = client.incident(args.id)
    now = time.time()
    out = Path(args.out)
    if not out.is_dir():
        raise InvalidInput(f"--out {args.out!r} is not a directory")
    data = report_json(shown.timeline, shown.json_data, now)
    iid = shown.timeline.incident.incident_id
    paths = (out / f"{iid}.md", out / f"{iid}.json")
    markdown = report_markdown(shown.timeline, now).encode()
    write_atomically(paths[0], markdown, mode=0o644, error=InvalidInput, what="the report")
    text = (dumps(data, "json") + "\n").encode()
    write_atomically(paths[1], text, mode=0o644, error=InvalidInput, what="the report")
    return emit(
        args,
        lambda: {**data, "files": {"markdown": str(paths[0]), "json": str(paths[1])}},
        lambda _l: "\n".join(f"wrote {render.escape(p)}" for p in paths),
    )


def _table(found: list[ReceivedIncident], layout: Layout) -> str:
    if not found:
        return "no incidents"
    rows = [
        (i.incident_id, i.severity.value, i.state.value, render.age(i.opened_s), i.opened_by,
         i.title)
        for i in (r.incident for r in found)
    ]  # fmt: skip
    return render.table(
        ("id", "severity", "state", "opened", "by", "title"),
        rows,
        width=layout.width,
        cut=("title",),
    )


def _timeline(shown: ReceivedTimeline, layout: Layout) -> str:
    t = shown.timeline
    i = t.incident
    head = [
        f"{render.escape(i.incident_id)} ({i.severity.value}, {i.state.value}): "
        f"{render.escape(i.title)}"
    ]
    rows = [
        (times.rfc3339(e.at_s, milliseconds=True), e.actor, e.kind, e.subject, e.detail)
        for e in t.entries
    ]
    head.append(
        render.table(("when", "actor", "step", "subject", "detail"), rows, width=layout.width,
                     cut=("detail", "subject"))
    )  # fmt: skip
    durations = t.milestones.durations(i.opened_s)
    for key, _attribute, phase, _what in PHASES:
        value = durations[key]
        head.append(f"time to {phase.lower()}: " + ("-" if value is None else f"{value:.1f} s"))
    held = ", ".join(f"{h.correction_id} {h.action}" for h in t.in_force) or "nothing"
    head.append(f"in force: {render.escape(held)}")
    return "\n".join(head)


open_incident = with_client(_open)
list_incident = with_client(_list)
show_incident = with_client(_show)
close_incident = with_client(_close)
report_incident = with_client(_report)
