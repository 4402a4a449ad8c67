"""The resolved targets of a scope, in one line, for prompts and approvals (PreviewScope)."""

from __future__ import annotations

from backstop.cli import render
from backstop.cli.client import ControllerClient, Preview
from backstop.core.errors import BackstopError, NotFound
from backstop.core.models import Scope, Workload

SHOWN_NODES = 5
SHOWN_WORKLOADS = 3
COMMAND_CHARS = 40


def targets_line(client: ControllerClient, scope: Scope) -> str:
    """``targets: 2 node(s) (a, b); 3 workload(s): wl-1 on a (pid 123, vllm ...), ...``,
    as the controller resolves the scope now from the nodes' latest reports."""
    try:
        found = client.preview(scope, SHOWN_WORKLOADS)
    except NotFound:
        raise  # e.g. an unknown node: acting on the scope would be refused the same way
    except BackstopError as exc:
        why = render.escape(exc.message)
        return f"targets: unknown (the controller did not resolve them: {why})"
    return describe(found)


def describe(found: Preview) -> str:
    nodes = list(found.node_ids)
    node_text = ", ".join(render.escape(n) for n in nodes[:SHOWN_NODES])
    if len(nodes) > SHOWN_NODES:
        node_text += f", ... and {len(nodes) - SHOWN_NODES} more"
    line = f"targets: {len(nodes)} node(s)" + (f" ({node_text})" if nodes else "")
    shown = [_workload(w) for w in found.workloads[:SHOWN_WORKLOADS]]
    line += f"; {found.workload_count} workload(s)"
    if shown:
        line += ": " + ", ".join(shown)
    if found.workload_count > len(shown) and shown:
        line += f", ... and {found.workload_count - len(shown)} more"
    return line


def _workload(w: Workload) -> str:
    command = " ".join(w.fingerprint.cmdline)
    if len(command) > COMMAND_CHARS:
        command = command[:COMMAND_CHARS] + " ..."
    what = render.escape(command) or render.escape(w.fingerprint.framework) or "?"
    return (
        f"{render.escape(w.workload_id)} on {render.escape(w.node_id)} (pid {w.root_pid}, {what})"
    )
