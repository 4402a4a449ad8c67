"""Output for people (aligned tables, progress lines) and scripts (``-o json``).

Every string that tenants, operators or the controller control goes through :func:`escape`
before it reaches the terminal, as ``ps`` does: a command line, reason or message can neither
move the cursor, repaint the screen, split a table row, nor reorder what is shown.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Collection, Sequence
from typing import TextIO

from backstop.core.models import (
    CorrectionSpec,
    CorrectionState,
    Fingerprint,
    Hold,
    Scope,
    TargetResult,
)
from backstop.core.times import rfc3339
from backstop.wire.received import ReceivedCorrection

_NAMED = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
_BIDI = frozenset([*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C])
_HIDDEN = frozenset(("Cc", "Cf", "Cs", "Co", "Zl", "Zp"))


def escape(text: object) -> str:
    """``text`` with every control, ESC, DEL, C1, newline, tab, bidi override or isolate,
    other invisible format character and backslash written as a visible escape
    (``\\x1b``, ``\\n``, ``\\u202e``, ``\\\\``); other characters stay as they are."""
    value = str(text)
    if value.isprintable() and "\\" not in value:
        return value  # the common case: nothing to escape
    out = []
    for c in value:
        code = ord(c)
        if c in _NAMED:
            out.append(_NAMED[c])
        elif code in _BIDI or unicodedata.category(c) in _HIDDEN:
            out.append(
                f"\\x{code:02x}"
                if code < 0x100
                else f"\\u{code:04x}"
                if code < 0x10000
                else f"\\U{code:08x}"
            )
        else:
            out.append(c)
    return "".join(out)


STATE_COLOURS = {
    **dict.fromkeys(("connected", "running", "completed", "applied", "ok"), "32"),
    **dict.fromkeys(("paused", "throttled", "observed", "pending", "proposed"), "33"),
    **dict.fromkeys(("offline", "terminated", "failed", "unreachable", "expired"), "31"),
}
"""ANSI colours of the state words a table shows (green, yellow, red), on a terminal only."""
MIN_CUT = 6
"""A column cut to fit the terminal keeps at least this many characters (and its header)."""


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    width: int | None = None,
    cut: Collection[str] = (),
    colour: Collection[str] = (),
) -> str:
    """Aligned columns, every cell escaped. With ``width``, the columns named in ``cut`` are
    narrowed, widest first, until the table fits, their long cells ending in ``…``; the
    state words of the columns named in ``colour`` are coloured."""
    cells = [[escape(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    if width is not None:
        _narrow(widths, headers, width, cut)
        cells = [[_cut(c, w) for c, w in zip(row, widths, strict=True)] for row in cells]
    painted = [i for i, h in enumerate(headers) if h in colour]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in cells:
        padded = [c.ljust(w) for c, w in zip(row, widths, strict=True)]
        for i in painted:
            if code := STATE_COLOURS.get(row[i]):
                padded[i] = f"\x1b[{code}m{row[i]}\x1b[0m" + padded[i][len(row[i]) :]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def _narrow(widths: list[int], headers: Sequence[str], width: int, cut: Collection[str]) -> None:
    excess = sum(widths) + 2 * (len(widths) - 1) - width
    floors = [max(len(h), MIN_CUT) for h in headers]
    while excess > 0:
        narrowable = [i for i, h in enumerate(headers) if h in cut and widths[i] > floors[i]]
        if not narrowable:
            return
        widest = max(narrowable, key=lambda i: widths[i])
        widths[widest] -= 1
        excess -= 1


def _cut(cell: str, width: int) -> str:
    return cell if len(cell) <= width else cell[: width - 1] + "…"


def age(ts: float, now: float | None = None) -> str:
    if ts <= 0:
        return "-"
    seconds = max(0, int((now or time.time()) - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def rate(per_s: float | None) -> str:
    """A rate for a table: ``-`` when nothing reports it (unknown is not zero)."""
    if per_s is None:
        return "-"
    return f"{per_s:.0f}" if per_s >= 10 else f"{per_s:.1f}"


def model_text(fp: Fingerprint) -> str:
    """A workload's model for a table: the identified model's id prefix and size class,
    ``invalid`` when its weights do not parse, else the older weights hash prefix."""
    model = fp.model
    if model is not None and model.model_id:
        return f"{model.model_id[:12]} {model.size_class}".rstrip()
    if model is not None and not model.valid:
        return "invalid"
    return fp.model_hash[:12] or "-"


def mib(n: int) -> str:
    return f"{n / 2**20:.0f}MiB" if n else "-"


def correction_state(state: CorrectionState | None) -> str:
    """The state's name; ``unspecified`` when the controller named none."""
    return "unspecified" if state is None else state.value


def scope_text(scope: Scope) -> str:
    """The scope in flag syntax, escaped; model hashes in full (a prefix is what matches)."""
    parts = []
    if scope.all:
        parts.append("all")
    if scope.node_ids:
        parts.append("node=" + ",".join(scope.node_ids))
    if scope.selector:
        parts.append(",".join(f"{k}{'=' if eq else '!='}{v}" for k, v, eq in scope.selector))
    if scope.model_hashes:
        parts.append("model=" + ",".join(scope.model_hashes))
    if scope.workload_ids:
        parts.append("workload=" + ",".join(scope.workload_ids))
    return escape(" ".join(parts)) or "-"


def target_line(target: TargetResult, since_s: float) -> str:
    elapsed = max(0.0, target.updated_at_s - since_s)
    state = target.state.value
    node = escape(target.node_id)
    if state in ("pending", "dispatched"):
        return f"  {node:<20} {state:<12} {elapsed:6.2f}s  {escape(target.message)}".rstrip()
    acted = [o for o in target.outcomes if o.outcome == "applied"]
    detail = target.message or "; ".join(o.detail for o in target.outcomes if o.detail)
    return (
        f"  {node:<20} {state:<12} {elapsed:6.2f}s  {len(acted)} workload(s)  {escape(detail)}"
    ).rstrip()


def spec_lines(spec: CorrectionSpec) -> list[str]:
    """What a correction asks for, from a spec the CLI decoded itself (the signed bytes)."""
    lines = [
        f"  scope:   {scope_text(spec.scope)}",
        f"  reason:  {escape(spec.reason)}",
        f"  issuer:  {escape(spec.issuer)}   created {age(spec.created_at_s)} ago, "
        f"expires {rfc3339(spec.expires_at_s)}",
    ]
    params = [
        f"{name}={value:g}"
        for name in ("power_fraction", "cpu_fraction", "grace_s", "sample_interval_s")
        if (value := getattr(spec.params, name)) is not None
    ]
    if params:
        lines.append(f"  params:  {' '.join(params)}")
    if spec.reverts:
        lines.append(f"  reverts: {escape(spec.reverts)}")
    return lines


def write_correction(
    out: TextIO, c: ReceivedCorrection, spec: CorrectionSpec, warnings: Sequence[str] = ()
) -> None:
    """A correction's state and targets, its content from ``spec`` (decoded from the signed
    bytes by the caller, never the controller's decoded copy); ``warnings`` go first."""
    for line in warnings:
        out.write(line + "\n")
    out.write(f"{escape(spec.correction_id)}  {spec.action.value}  {correction_state(c.state)}\n")
    out.write("".join(line + "\n" for line in spec_lines(spec)))
    if c.approvals_required:
        out.write(
            f"  approvals: {len(c.approvers)} of {c.approvals_required}"
            f"{' (' + escape(', '.join(c.approvers)) + ')' if c.approvers else ''}\n"
        )
    if c.message:
        out.write(f"  status:  {escape(c.message)}\n")
    for t in c.targets:
        out.write(target_line(t, spec.created_at_s) + "\n")


def holds_text(holds: Sequence[Hold]) -> str:
    """Every correction holding a workload, oldest first: ``pause cor-1a2b, throttle cor-3c4d``.

    All of them, never a count alone: the workload stays held until the last is resumed."""
    return ", ".join(f"{h.action} {h.correction_id}" for h in holds) or "-"
