"""``backstop nodes | workloads | corrections``: the fleet as the controller sees it now.

``-o json`` and ``-o yaml`` print the records as received (the documented shapes); the tables
fit the terminal (:mod:`backstop.cli.output`). ``workloads`` filters on the controller by node
and model, and here, on the records received, by framework, namespace, pod, state and labels.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from backstop.cli import render, usage_render
from backstop.cli.client import ControllerClient
from backstop.cli.connect import with_client
from backstop.cli.output import Layout, emit
from backstop.cli.watching import watchable
from backstop.core.models import Workload
from backstop.core.scope import (
    GPU_ALLOCATION_LABEL,
    NAMESPACE_LABEL,
    POD_LABEL,
    UNALLOCATED,
    kubernetes_selector,
    parse_model_hash,
    parse_selector,
    selector_matches,
    workload_namespace,
)
from backstop.wire.received import Received, ReceivedCorrection, ReceivedNode, ReceivedWorkload

COMMAND_CHARS = 48
REASON_CHARS = 40


def _records(received: Sequence[Received]) -> list[object]:
    return [r.json_data for r in received]


def _nodes(client: ControllerClient, args: argparse.Namespace) -> int:
    nodes = client.list_nodes()
    return emit(args, lambda: _records(nodes), lambda layout: _nodes_table(nodes, layout))


def _nodes_table(nodes: Sequence[ReceivedNode], layout: Layout) -> str:
    rows: list[tuple[object, ...]] = [
        (
            n.node.node_id,
            "connected" if n.connected else "offline",
            len(n.node.gpus),
            ", ".join(sorted({g.name for g in n.node.gpus}))
            or ("-" if n.node.nvml_available else "no NVML"),
            n.workload_count,
            render.age(n.last_seen_s),
            n.node.agent_version,
        )
        for n in nodes
    ]
    headers: tuple[str, ...] = ("node", "status", "gpus", "gpu model", "workloads", "seen", "agent")
    if any(n.unattributed_count for n in nodes):  # GPU use no process of the node explains
        headers += ("unattributed",)
        rows = [(*row, n.unattributed_count) for row, n in zip(rows, nodes, strict=True)]
    if len({n.replica for n in nodes if n.replica}) > 1:  # several replicas: say which holds whom
        headers += ("replica",)
        rows = [(*row, n.replica or "-") for row, n in zip(rows, nodes, strict=True)]
    return render.table(
        headers,
        rows,
        width=layout.width,
        cut=("node", "gpu model", "agent", "replica"),
        colour=("status",) if layout.colour else (),
    )


def _wanted(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The client-side filters given, as (what, value)."""
    return [
        (name, value)
        for name in ("framework", "namespace", "pod", "state", "selector")
        if (value := getattr(args, name, ""))
    ]


def workload_matches(w: Workload, wanted: Sequence[tuple[str, str]]) -> bool:
    """Whether a workload passes every filter of ``backstop workloads``."""
    for name, value in wanted:
        if name == "framework" and w.fingerprint.framework.lower() != value.lower():
            return False
        if name == "namespace" and workload_namespace(w) != value:
            return False
        if name == "pod" and not selector_matches(kubernetes_selector("", value), w.labels):
            return False
        if name == "state" and ("unattributed" if w.unattributed else w.state) != value:
            return False
        if name == "selector" and not selector_matches(parse_selector(value), w.labels):
            return False
    return True


def _workloads(client: ControllerClient, args: argparse.Namespace) -> int:
    model = parse_model_hash(args.model) if args.model else ""
    wanted = _wanted(args)
    if args.selector:
        parse_selector(args.selector)  # a malformed selector is refused before any call
    if args.pod:
        kubernetes_selector("", args.pod)
    workloads = [
        w for w in client.list_workloads(args.node, model) if workload_matches(w.workload, wanted)
    ]
    return emit(
        args, lambda: _records(workloads), lambda layout: _workloads_table(workloads, layout)
    )


def _workloads_table(workloads: Sequence[ReceivedWorkload], layout: Layout) -> str:
    rows: list[tuple[object, ...]] = []
    for w in (listed.workload for listed in workloads):
        fp = w.fingerprint
        gpu_mem = sum(g.used_memory_bytes for g in fp.gpus)
        command = w.unattributed or " ".join(fp.cmdline)  # unattributed use: why, instead
        rows.append(
            (
                w.workload_id,
                w.node_id,
                w.root_pid or "-",
                len(w.pids),
                "unattributed" if w.unattributed else w.state,
                fp.framework or "-",
                fp.behaviour or "-",
                f"{len(fp.gpus)}/{render.mib(gpu_mem)}" if fp.gpus else "-",
                usage_render.sm_text(fp.gpus),
                ",".join(str(p) for p in fp.listening_ports) or "-",
                render.model_text(fp),
                render.rate(w.serving.generated_tokens_per_s if w.serving else None),
                render.holds_text(w.holds),
                command if layout.wide else command[:COMMAND_CHARS],
            )
        )
    headers: tuple[str, ...] = (
        "workload", "node", "pid", "procs", "state", "framework", "behaviour", "gpus/mem",
        "sm", "ports", "model", "tok/s", "holds", "command",
    )  # fmt: skip
    headers, rows = _pod_columns(workloads, headers, rows)
    return render.table(
        headers,
        rows,
        width=layout.width,
        cut=("workload", "node", "holds", "pod", "command"),
        colour=("state",) if layout.colour else (),
    )


def _pod_columns(
    workloads: Sequence[ReceivedWorkload],
    headers: tuple[str, ...],
    rows: list[tuple[object, ...]],
) -> tuple[tuple[str, ...], list[tuple[object, ...]]]:
    """``pod`` (NAMESPACE/NAME) where an agent attributed any workload to a pod, and
    ``gpu alloc`` where any uses a GPU its container was not allocated; before ``command``."""
    labels = [listed.workload.labels for listed in workloads]
    extra: list[tuple[str, list[str]]] = []
    if any(POD_LABEL in lab for lab in labels):
        pods = [
            f"{lab.get(NAMESPACE_LABEL, '?')}/{lab[POD_LABEL]}" if POD_LABEL in lab else "-"
            for lab in labels
        ]
        extra.append(("pod", pods))
    if any(lab.get(GPU_ALLOCATION_LABEL) == UNALLOCATED for lab in labels):
        extra.append(("gpu alloc", [lab.get(GPU_ALLOCATION_LABEL, "-") for lab in labels]))
    for name, values in extra:
        headers = (*headers[:-1], name, headers[-1])
        rows = [(*row[:-1], v, row[-1]) for row, v in zip(rows, values, strict=True)]
    return headers, rows


def _corrections(client: ControllerClient, args: argparse.Namespace) -> int:
    corrections = client.list_corrections(args.limit)
    return emit(
        args,
        lambda: _records(corrections),
        lambda layout: _corrections_table(corrections, layout),
    )


def _corrections_table(corrections: Sequence[ReceivedCorrection], layout: Layout) -> str:
    rows = [
        (
            spec.correction_id,
            spec.action.value,
            render.correction_state(c.state),
            render.scope_text(spec.scope),
            len(c.targets),
            render.age(spec.created_at_s),
            spec.issuer,
            spec.reason if layout.wide else spec.reason[:REASON_CHARS],  # escaped by the table
        )
        for c, spec in ((c, c.controllers_copy()) for c in corrections)
    ]
    return render.table(
        ("id", "action", "state", "scope", "targets", "age", "issuer", "reason"),
        rows,
        width=layout.width,
        cut=("scope", "issuer", "reason"),
        colour=("state",) if layout.colour else (),
    )


nodes = with_client(watchable(_nodes))
workloads = with_client(watchable(_workloads))
corrections = with_client(watchable(_corrections))
