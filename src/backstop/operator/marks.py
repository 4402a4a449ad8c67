"""What the operator writes on the objects it touches, and the patches that write and undo it.

A held Deployment or StatefulSet carries two annotations:

- ``backstop.io/correction``: the Corrections holding it, comma-separated in the order they
  took hold (two Corrections may hold the same object; it is released when the last one goes);
- ``backstop.io/previous-replicas``: its replicas before the first of them took hold. It is
  written once, in the same patch that scales to zero, and never overwritten while any hold
  remains, so neither a restart nor a second Correction can turn it into 0.

A fenced node carries ``backstop.io/correction``, ``backstop.io/previous-unschedulable`` (so a
node cordoned before the shutdown stays cordoned after it) and the taint
``backstop.io/shutdown=<first holder>:NoSchedule``.

Every patch is a JSON merge patch that names the ``resourceVersion`` it was computed from: the
API server refuses it with 409 Conflict if the object changed since, and the caller re-reads
and recomputes. ``None`` means there is nothing to write. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ANNOTATION_CORRECTION = "backstop.io/correction"
ANNOTATION_PREVIOUS_REPLICAS = "backstop.io/previous-replicas"
ANNOTATION_PREVIOUS_UNSCHEDULABLE = "backstop.io/previous-unschedulable"
TAINT_KEY = "backstop.io/shutdown"
TAINT_EFFECT = "NoSchedule"
EXEMPT_LABEL = "backstop.io/exempt"
"""Objects labelled ``backstop.io/exempt: "true"`` (Backstop's own) are never touched."""

Patch = dict[str, Any]


def annotations_of(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def holders(obj: Mapping[str, Any]) -> tuple[str, ...]:
    """The Corrections holding ``obj``, oldest first."""
    raw = annotations_of(obj).get(ANNOTATION_CORRECTION, "")
    return tuple(name for name in (part.strip() for part in raw.split(",")) if name)


def replicas(obj: Mapping[str, Any]) -> int:
    """``spec.replicas`` (the API server defaults it to 1)."""
    value = (obj.get("spec") or {}).get("replicas")
    return value if isinstance(value, int) else 1


def previous_replicas(obj: Mapping[str, Any]) -> int | None:
    """The recorded replicas before the first hold, if a valid one is recorded."""
    raw = annotations_of(obj).get(ANNOTATION_PREVIOUS_REPLICAS)
    try:
        value = int(raw) if raw is not None else None
    except ValueError:
        return None
    return value if value is not None and value >= 0 else None


def _meta(obj: Mapping[str, Any], annotations_patch: Mapping[str, str | None]) -> Patch:
    meta: Patch = {"resourceVersion": (obj.get("metadata") or {}).get("resourceVersion")}
    if annotations_patch:
        meta["annotations"] = dict(annotations_patch)
    return meta


@dataclass(frozen=True, slots=True)
class HoldPlan:
    """How to hold a workload at zero: the patch (None: already held) and what it records."""

    patch: Patch | None
    previous: int
    """The replicas to restore on resume."""
    scaled_from: int
    """The replicas the patch scales down from (0 when nothing is written)."""
    newly_held: bool


def plan_hold(obj: Mapping[str, Any], correction: str, recorded: int | None = None) -> HoldPlan:
    """Hold ``obj`` at zero for ``correction``.

    ``recorded`` is the previous count this Correction's status already holds for the object,
    used when the annotation is gone (someone removed it) and the object is at zero: the first
    count recorded for an object wins.
    """
    current = replicas(obj)
    holding = holders(obj)
    annotated = previous_replicas(obj)
    if correction in holding:
        previous = annotated if annotated is not None else (recorded or current)
        fix = {} if annotated is not None else {ANNOTATION_PREVIOUS_REPLICAS: str(previous)}
        if current == 0 and not fix:
            return HoldPlan(None, previous, 0, newly_held=False)
        patch = {"metadata": _meta(obj, fix), "spec": {"replicas": 0}}
        return HoldPlan(patch, previous, current, newly_held=False)
    if holding and annotated is not None:
        previous = annotated
    elif recorded is not None and current == 0:
        previous = recorded
    else:
        previous = current
    patch = {
        "metadata": _meta(
            obj,
            {
                ANNOTATION_CORRECTION: ",".join((*holding, correction)),
                ANNOTATION_PREVIOUS_REPLICAS: str(previous),
            },
        ),
        "spec": {"replicas": 0},
    }
    return HoldPlan(patch, previous, current, newly_held=True)


@dataclass(frozen=True, slots=True)
class ReleasePlan:
    """How to release a workload: the patch (None: not held by this Correction) and outcome."""

    patch: Patch | None
    remaining: tuple[str, ...]
    """Other Corrections still holding it (it stays at zero)."""
    restored_to: int | None
    """The replicas it is scaled back to (None when it stays at zero)."""
    previous: int | None


def plan_release(obj: Mapping[str, Any], correction: str, *, restore: bool) -> ReleasePlan:
    """Release ``correction``'s hold on ``obj``; with ``restore``, the last hold scales it back."""
    holding = holders(obj)
    previous = previous_replicas(obj)
    if correction not in holding:
        return ReleasePlan(None, holding, None, previous)
    remaining = tuple(h for h in holding if h != correction)
    if remaining:
        patch = {"metadata": _meta(obj, {ANNOTATION_CORRECTION: ",".join(remaining)})}
        return ReleasePlan(patch, remaining, None, previous)
    patch = {
        "metadata": _meta(obj, {ANNOTATION_CORRECTION: None, ANNOTATION_PREVIOUS_REPLICAS: None})
    }
    target = previous if restore and previous is not None else None
    if target is not None:
        patch["spec"] = {"replicas": target}
    return ReleasePlan(patch, (), target, previous)


def _taints(node: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [dict(t) for t in (node.get("spec") or {}).get("taints") or []]


def has_fence_taint(node: Mapping[str, Any]) -> bool:
    return any(t.get("key") == TAINT_KEY and t.get("effect") == TAINT_EFFECT for t in _taints(node))


def unschedulable(node: Mapping[str, Any]) -> bool:
    return bool((node.get("spec") or {}).get("unschedulable"))


@dataclass(frozen=True, slots=True)
class FencePlan:
    """How to fence a node: the patch (None: already fenced) and its state before."""

    patch: Patch | None
    was_unschedulable: bool
    newly_held: bool


def plan_fence(node: Mapping[str, Any], correction: str) -> FencePlan:
    """Cordon ``node`` and taint it ``backstop.io/shutdown=<correction>:NoSchedule``."""
    holding = holders(node)
    recorded = annotations_of(node).get(ANNOTATION_PREVIOUS_UNSCHEDULABLE)
    was = recorded == "true" if holding and recorded is not None else unschedulable(node)
    tainted = has_fence_taint(node)
    if correction in holding and unschedulable(node) and tainted:
        return FencePlan(None, was, newly_held=False)
    note: dict[str, str | None] = {}
    if correction not in holding:
        note[ANNOTATION_CORRECTION] = ",".join((*holding, correction))
    if correction not in holding or recorded is None:
        note[ANNOTATION_PREVIOUS_UNSCHEDULABLE] = "true" if was else "false"
    spec: Patch = {"unschedulable": True}
    if not tainted:
        first = holding[0] if holding else correction
        spec["taints"] = [
            *_taints(node),
            {"key": TAINT_KEY, "value": first, "effect": TAINT_EFFECT},
        ]
    patch = {"metadata": _meta(node, note), "spec": spec}
    return FencePlan(patch, was, newly_held=correction not in holding)


@dataclass(frozen=True, slots=True)
class UnfencePlan:
    """How to lift ``correction``'s fence: the patch (None: not fenced by it) and outcome."""

    patch: Patch | None
    remaining: tuple[str, ...]
    left_cordoned: bool
    """The node stays cordoned (another hold, or it was cordoned before the shutdown)."""


def plan_unfence(node: Mapping[str, Any], correction: str) -> UnfencePlan:
    """Lift the fence; the last hold restores the node's schedulability and drops the taint."""
    holding = holders(node)
    if correction not in holding:
        return UnfencePlan(None, holding, unschedulable(node))
    remaining = tuple(h for h in holding if h != correction)
    if remaining:
        taints = [
            {**t, "value": remaining[0]} if t.get("key") == TAINT_KEY else t for t in _taints(node)
        ]
        patch = {
            "metadata": _meta(node, {ANNOTATION_CORRECTION: ",".join(remaining)}),
            "spec": {"taints": taints},
        }
        return UnfencePlan(patch, remaining, left_cordoned=True)
    was = annotations_of(node).get(ANNOTATION_PREVIOUS_UNSCHEDULABLE) == "true"
    kept = [t for t in _taints(node) if t.get("key") != TAINT_KEY]
    patch = {
        "metadata": _meta(
            node, {ANNOTATION_CORRECTION: None, ANNOTATION_PREVIOUS_UNSCHEDULABLE: None}
        ),
        "spec": {"unschedulable": True if was else None, "taints": kept or None},
    }
    return UnfencePlan(patch, (), left_cordoned=was)
