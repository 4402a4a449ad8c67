"""``--dry-run`` of a correcting verb: the targets its scope reaches now, and nothing done.

The controller resolves the scope as it would a new correction's (PreviewScope, from the
nodes' latest reports); nothing is created, signed or asked for. ``-o json`` and ``-o yaml``
print the preview as received.
"""

from __future__ import annotations

import argparse

from backstop.cli import render
from backstop.cli.client import ControllerClient, Preview
from backstop.cli.output import Layout, emit
from backstop.core.models import Scope

MOST_SHOWN = 1000
"""The controller lists at most this many workloads; the count is always whole."""
COMMAND_CHARS = 48


def show(client: ControllerClient, verb: str, scope: Scope, args: argparse.Namespace) -> int:
    found = client.preview(scope, MOST_SHOWN)
    return emit(args, lambda: dict(found.json_data), lambda layout: _text(verb, found, layout))


def _text(verb: str, found: Preview, layout: Layout) -> str:
    nodes = ", ".join(render.escape(n) for n in found.node_ids) or "none"
    lines = [
        f"dry run: {verb} would reach {len(found.node_ids)} node(s) ({nodes}) and "
        f"{found.workload_count} workload(s); nothing was changed"
    ]
    if found.workloads:
        rows = []
        for w in found.workloads:
            command = " ".join(w.fingerprint.cmdline)
            rows.append(
                (
                    w.workload_id,
                    w.node_id,
                    w.root_pid,
                    w.state,
                    w.fingerprint.framework or "-",
                    render.model_text(w.fingerprint),
                    render.holds_text(w.holds),
                    command if layout.wide else command[:COMMAND_CHARS],
                )
            )
        headers = ("workload", "node", "pid", "state", "framework", "model", "holds", "command")
        lines.append(
            render.table(
                headers,
                rows,
                width=layout.width,
                cut=("workload", "node", "holds", "command"),
                colour=("state",) if layout.colour else (),
            )
        )
    if found.workload_count > len(found.workloads):
        lines.append(f"... and {found.workload_count - len(found.workloads)} more")
    return "\n".join(lines)
