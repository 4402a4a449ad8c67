"""A Correction's outcome in plain words: ``"2 Deployments scaled to 0, 1 pod deleted"``.

The message goes into ``status.message``, the Events, and the acknowledgement the controller
gets, so it says what happened (and what did not) without needing the target list. Pure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from backstop.operator.crd import Phase, TargetRecord, TargetState

NOTHING_IN_SCOPE = "no workloads in scope; nothing to do"
EMPTY_SCOPE = (
    "the scope names nothing (set all, namespaces, selector, nodes or workloads); nothing to do"
)
_NOUNS = {"Deployment": "Deployment", "StatefulSet": "StatefulSet", "Pod": "pod", "Node": "node"}


def _count(n: int, kind: str) -> str:
    noun = _NOUNS.get(kind, kind)
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _failures(targets: Sequence[TargetRecord]) -> str:
    failed = [t for t in targets if t.state is TargetState.FAILED]
    if not failed:
        return ""
    detail = "; ".join(
        f"{t.kind} {t.namespace + '/' if t.namespace else ''}{t.name}: {t.message}"
        for t in failed[:3]
    )
    more = f" (and {len(failed) - 3} more)" if len(failed) > 3 else ""
    return f"{len(failed)} failed: {detail}{more}"


_APPLY_WORDS = (
    ("Deployment", TargetState.SCALED, "scaled to 0"),
    ("StatefulSet", TargetState.SCALED, "scaled to 0"),
    ("Pod", TargetState.DELETED, "deleted"),
)


def summarize_apply(targets: Sequence[TargetRecord]) -> str:
    """What a pause, terminate or shutdown did."""
    counts = Counter((t.kind, t.state) for t in targets)
    parts = [
        f"{_count(counts[(kind, state)], kind)} {words}"
        for kind, state, words in _APPLY_WORDS
        if counts[(kind, state)]
    ]
    skipped = [t for t in targets if t.state is TargetState.SKIPPED]
    if skipped:
        owners = ", ".join(sorted({t.message.removeprefix("owned by ") for t in skipped})[:3])
        parts.append(f"{_count(len(skipped), 'Pod')} skipped (owned by {owners})")
    gone = sum(1 for t in targets if t.state is TargetState.GONE)
    if gone:
        parts.append(f"{gone} deleted by someone else meanwhile")
    workload_failures = any(t.kind != "Node" and t.state is TargetState.FAILED for t in targets)
    if not parts and not workload_failures:
        parts.append(NOTHING_IN_SCOPE)
    nodes = counts[("Node", TargetState.CORDONED)]
    if nodes:
        parts.append(f"{_count(nodes, 'Node')} cordoned and tainted")
    failures = _failures(targets)
    if not parts:
        return failures
    return ", ".join(parts) + (f"; {failures}" if failures else "")


def summarize_revert(targets: Sequence[TargetRecord]) -> str:
    """What a resume (or the deletion of a Correction) undid, and what it could not."""
    counts = Counter((t.kind, t.state) for t in targets)
    parts = []
    for kind in ("Deployment", "StatefulSet"):
        restored = counts[(kind, TargetState.RESTORED)]
        if restored:
            whose = "its" if restored == 1 else "their"
            parts.append(f"{_count(restored, kind)} restored to {whose} previous replicas")
        if counts[(kind, TargetState.RELEASED)]:
            parts.append(f"{_count(counts[(kind, TargetState.RELEASED)], kind)} released at 0")
        if counts[(kind, TargetState.STILL_HELD)]:
            held = _count(counts[(kind, TargetState.STILL_HELD)], kind)
            parts.append(f"{held} still held by another Correction")
    if counts[("Node", TargetState.UNCORDONED)]:
        parts.append(f"{_count(counts[('Node', TargetState.UNCORDONED)], 'Node')} uncordoned")
    if counts[("Node", TargetState.STILL_HELD)]:
        held = _count(counts[("Node", TargetState.STILL_HELD)], "Node")
        parts.append(f"{held} still fenced by another Correction")
    if counts[("Pod", TargetState.DELETED)]:
        pods = _count(counts[("Pod", TargetState.DELETED)], "Pod")
        parts.append(f"{pods} deleted earlier not brought back (bare pods cannot be)")
    if not parts:
        parts.append("nothing was held; nothing to do")
    failures = _failures(targets)
    return ", ".join(parts) + (f"; {failures}" if failures else "")


def phase_of(targets: Iterable[TargetRecord], success: Phase) -> Phase:
    """``success`` unless a target failed."""
    return Phase.FAILED if any(t.state is TargetState.FAILED for t in targets) else success


def status_body(
    phase: Phase, message: str, targets: Sequence[TargetRecord], generation: int
) -> dict[str, Any]:
    """The ``status`` of a Correction, as a merge patch replaces it."""
    ordered = sorted(targets, key=lambda t: (t.kind != "Node", t.kind, t.namespace, t.name))
    return {
        "phase": phase.value,
        "message": message,
        "observedGeneration": generation,
        "targetCount": sum(
            1 for t in ordered if t.state not in (TargetState.SKIPPED, TargetState.GONE)
        ),
        "targets": [t.to_json() for t in ordered],
    }
