"""``backstop describe node|workload|correction|model ID``: everything known about one thing.

A node: its description, GPUs, connection, recorded heads, its workloads and the recent
corrections that reached it. A workload: its fingerprint, model, serving telemetry, the holds
in force and the corrections behind them. A correction: what ``status`` shows. A model: what
``models ID`` shows. ``-o json|yaml`` prints the same, as data: the records as the listings
print them, under one key each.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from backstop.cli import models, render, signed, usage_render
from backstop.cli.client import ControllerClient
from backstop.cli.connect import with_client
from backstop.cli.output import emit, structured
from backstop.core.errors import NotFound
from backstop.core.times import rfc3339
from backstop.wire.json_form import document
from backstop.wire.received import ReceivedCorrection, ReceivedNode, ReceivedWorkload

RECENT_CORRECTIONS = 10
KINDS = ("node", "workload", "correction", "model")


def _describe(client: ControllerClient, args: argparse.Namespace) -> int:
    if args.kind == "correction":
        return _correction(client, args)
    if args.kind == "model":
        args.model_id = args.id
        return models.show(client, args)
    if args.kind == "node":
        return _node(client, args)
    return _workload(client, args)


def _correction(client: ControllerClient, args: argparse.Namespace) -> int:
    correction = client.get(args.id)
    if structured(args):
        return emit(
            args,
            lambda: document("CorrectionDescription", {"correction": correction.json_data}),
            lambda _: "",
        )
    view = signed.view(correction)
    render.write_correction(sys.stdout, correction, view.spec, view.warnings)
    return 0


def _node(client: ControllerClient, args: argparse.Namespace) -> int:
    node = next((n for n in client.list_nodes() if n.node.node_id == args.id), None)
    if node is None:
        raise NotFound(f"unknown node {args.id!r}; see `backstop nodes`")
    workloads = client.list_workloads(args.id)
    reached = _recent(
        client.list_corrections(), lambda c: args.id in {t.node_id for t in c.targets}
    )

    def data() -> object:
        return document(
            "NodeDescription",
            {
                "node": node.json_data,
                "workloads": [w.json_data for w in workloads],
                "corrections": [c.json_data for c in reached],
            },
        )

    return emit(args, data, lambda _: _node_text(node, workloads, reached))


def _workload(client: ControllerClient, args: argparse.Namespace) -> int:
    found = next((w for w in client.list_workloads() if w.workload.workload_id == args.id), None)
    if found is None:
        raise NotFound(f"unknown workload {args.id!r}; see `backstop workloads`")
    holding = {h.correction_id for h in found.workload.holds}
    behind = _recent(client.list_corrections(), lambda c: c.correction_id in holding)

    def data() -> object:
        return document(
            "WorkloadDescription",
            {"workload": found.json_data, "corrections": [c.json_data for c in behind]},
        )

    return emit(args, data, lambda _: _workload_text(found, behind))


def _recent(
    corrections: Sequence[ReceivedCorrection], wanted: Callable[[ReceivedCorrection], bool]
) -> list[ReceivedCorrection]:
    """The newest of ``corrections`` (listed newest first) that ``wanted`` keeps."""
    return [c for c in corrections if wanted(c)][:RECENT_CORRECTIONS]


def _node_text(
    node: ReceivedNode, workloads: Sequence[ReceivedWorkload], reached: Sequence[ReceivedCorrection]
) -> str:
    info = node.node
    lines = _fields(
        ("node", info.node_id),
        ("hostname", info.hostname or "-"),
        ("status", "connected" if node.connected else "offline"),
        ("last seen", rfc3339(node.last_seen_s) if node.last_seen_s else "-"),
        ("agent", info.agent_version or "-"),
        ("replica", node.replica or "-"),
        ("capabilities", ", ".join(info.capabilities) or "-"),
        ("labels", ", ".join(f"{k}={v}" for k, v in sorted(info.labels.items())) or "-"),
        ("workloads", f"{node.workload_count} ({node.unattributed_count} unattributed)"),
    )
    lines.append("gpus:" if info.gpus else "gpus: none" if info.nvml_available else "gpus: no NVML")
    lines += [
        f"  {render.escape(g.index)}  {render.escape(g.name)}  {render.escape(g.uuid)}"
        for g in info.gpus
    ]
    lines.append("workloads:" if workloads else "workloads: none")
    lines += [
        f"  {render.escape(w.workload.workload_id)}  "
        f"{'unattributed' if w.workload.unattributed else render.escape(w.workload.state)}  "
        f"{render.model_text(w.workload.fingerprint)}"
        for w in workloads
    ]
    lines += _corrections_text(reached, "recent corrections that reached it")
    return "\n".join(lines)


def _workload_text(found: ReceivedWorkload, behind: Sequence[ReceivedCorrection]) -> str:
    w = found.workload
    fp = w.fingerprint
    model = fp.model
    lines = _fields(
        ("workload", w.workload_id),
        ("node", w.node_id),
        ("state", "unattributed" if w.unattributed else w.state),
        ("unattributed", w.unattributed or "-"),
        ("root pid", w.root_pid or "-"),
        ("processes", len(w.pids)),
        ("command", " ".join(fp.cmdline) or "-"),
        ("framework", fp.framework or "-"),
        ("behaviour", f"{fp.behaviour.value} ({fp.behaviour_confidence:.2f})"),
        ("ports", ", ".join(str(p) for p in fp.listening_ports) or "-"),
        ("container", fp.container_id or "-"),
        ("cgroup", fp.cgroup or "-"),
        ("labels", ", ".join(f"{k}={v}" for k, v in sorted(w.labels.items())) or "-"),
    )
    if model is not None:
        lines += _fields(
            ("model", model.model_id or f"invalid: {model.invalid_reason}"),
            ("architecture", model.architecture or "-"),
            ("name", model.name or "-"),
            ("parameters", f"{model.parameters} ({model.size_class or '-'})"),
            ("formats", "+".join(model.formats) or "-"),
        )
    if w.serving is not None:
        s = w.serving
        lines += _fields(
            ("server", f"{s.server} on port {s.port}, serving {s.model_name or '-'}"),
            ("tokens/s", f"{render.rate(s.generated_tokens_per_s)} generated, "
             f"{render.rate(s.prompt_tokens_per_s)} prompt"),
            ("requests", f"{render.rate(s.requests_running)} running, "
             f"{render.rate(s.requests_waiting)} waiting"),
        )  # fmt: skip
    lines.append("gpus:" if fp.gpus else "gpus: none")
    lines += [usage_render.gpu_line(g) for g in fp.gpus]
    lines += _fields(("network", usage_render.network_line(w.network)))
    lines.append("weights:" if fp.weights else "weights: none")
    lines += [
        f"  {render.escape(f.path)}  {render.escape(f.format)}  "
        f"{render.escape(f.invalid_reason) or 'valid'}"
        for f in fp.weights
    ]
    lines += _fields(("holds", render.holds_text(w.holds)))
    lines += _corrections_text(behind, "corrections holding it")
    return "\n".join(lines)


def _corrections_text(corrections: Sequence[ReceivedCorrection], title: str) -> list[str]:
    if not corrections:
        return [f"{title}: none"]
    lines = [f"{title}:"]
    for c in corrections:
        spec = c.shown
        what = (
            f"{spec.action.value} {render.scope_text(spec.scope)}: {render.escape(spec.reason)}"
            if spec is not None
            else f"(the controller's copy does not decode: {render.escape(c.shown_error)})"
        )
        lines.append(
            f"  {render.escape(c.correction_id)}  {render.correction_state(c.state)}  {what}"
        )
    return lines


def _fields(*pairs: tuple[str, object]) -> list[str]:
    width = max(len(k) for k, _ in pairs)
    return [f"{k + ':':<{width + 1}} {render.escape(v)}" for k, v in pairs]


describe = with_client(_describe)
