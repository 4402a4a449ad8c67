"""Output for people (aligned tables, progress lines) and scripts (``-o json``)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, TextIO

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from backstop.api.v1 import types_pb2


def to_json(messages: Sequence[Message] | Message) -> str:
    def one(m: Message) -> dict[str, Any]:
        return MessageToDict(
            m, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )

    data: Any = [one(m) for m in messages] if isinstance(messages, Sequence) else one(messages)
    return json.dumps(data, indent=2, sort_keys=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def age(ts: float, now: float | None = None) -> str:
    if ts <= 0:
        return "-"
    seconds = max(0, int((now or time.time()) - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def mib(n: int) -> str:
    return f"{n / 2**20:.0f}MiB" if n else "-"


def enum_name(value: str) -> str:
    """ACTION_PAUSE -> pause, TARGET_STATE_APPLIED -> applied."""
    for prefix in ("ACTION_", "CORRECTION_STATE_", "TARGET_STATE_"):
        if value.startswith(prefix):
            return value.removeprefix(prefix).lower()
    return value.lower()


def action(value: int) -> str:
    return enum_name(types_pb2.Action.Name(value))


def correction_state(value: int) -> str:
    return enum_name(types_pb2.CorrectionState.Name(value))


def target_state(value: int) -> str:
    return enum_name(types_pb2.TargetState.Name(value))


def scope_text(scope: types_pb2.Scope) -> str:
    parts = []
    if scope.all:
        parts.append("all")
    if scope.node_ids:
        parts.append("node=" + ",".join(scope.node_ids))
    if scope.selector:
        parts.append(
            ",".join(f"{r.key}{'=' if r.equal else '!='}{r.value}" for r in scope.selector)
        )
    if scope.model_hashes:
        parts.append("model=" + ",".join(h[:12] for h in scope.model_hashes))
    if scope.workload_ids:
        parts.append("workload=" + ",".join(scope.workload_ids))
    return " ".join(parts) or "-"


def target_line(target: types_pb2.TargetResult, since_s: float) -> str:
    elapsed = max(0.0, target.updated_at_s - since_s)
    state = target_state(target.state)
    if state in ("pending", "dispatched"):
        return f"  {target.node_id:<20} {state:<12} {elapsed:6.2f}s  {target.message}".rstrip()
    acted = [o for o in target.outcomes if o.outcome == "applied"]
    detail = target.message or "; ".join(o.detail for o in target.outcomes if o.detail)
    return (
        f"  {target.node_id:<20} {state:<12} {elapsed:6.2f}s  {len(acted)} workload(s)  {detail}"
    ).rstrip()


def write_correction(out: TextIO, c: types_pb2.Correction) -> None:
    spec = c.spec
    out.write(
        f"{spec.correction_id}  {action(spec.action)}  {correction_state(c.state)}\n"
        f"  scope:   {scope_text(spec.scope)}\n"
        f"  reason:  {spec.reason}\n"
        f"  issuer:  {spec.issuer}   created {age(spec.created_at_s)} ago\n"
    )
    if spec.reverts:
        out.write(f"  reverts: {spec.reverts}\n")
    if c.message:
        out.write(f"  status:  {c.message}\n")
    for t in c.targets:
        out.write(target_line(t, spec.created_at_s) + "\n")
