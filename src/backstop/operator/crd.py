"""The ``Correction`` custom resource: its names and its parsed, typed form.

``parse_correction`` turns the API server's JSON into a :class:`CorrectionResource`. The
schema (``helm/backstop/crds/corrections.backstop.io.yaml``) already refuses a bad action, a
missing reason or a resume without ``resumes``; what it cannot check (a label selector's shape,
which is free-form there) is checked here and raised as :class:`InvalidInput`, which the
reconciler writes into the Correction's status. Pure: no I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from backstop.core.errors import InvalidInput
from backstop.core.models import Action

GROUP = "backstop.io"
VERSION = "v1"
PLURAL = "corrections"
KIND = "Correction"
API_VERSION = f"{GROUP}/{VERSION}"
FINALIZER = "backstop.io/revert"
"""Held by every non-resume Correction so that deleting it reverts it first."""
COMPONENT = "backstop-operator"
"""The name the operator reports itself by (Events, field manager)."""

ACTIONS = (Action.PAUSE, Action.TERMINATE, Action.SHUTDOWN, Action.RESUME)
"""The actions a Correction may name (the schema's enum)."""


class Phase(enum.StrEnum):
    """Where a Correction stands (``status.phase``)."""

    PENDING = "Pending"
    APPLYING = "Applying"
    APPLIED = "Applied"
    FAILED = "Failed"
    REVERTING = "Reverting"
    REVERTED = "Reverted"

    @property
    def settled(self) -> bool:
        """Whether the operator has finished with the Correction for now."""
        return self in (Phase.APPLIED, Phase.FAILED, Phase.REVERTED)


class TargetState(enum.StrEnum):
    """What happened to one object (``status.targets[].state``)."""

    SCALED = "Scaled"
    """Held at zero replicas."""
    DELETED = "Deleted"
    """A bare pod, deleted (resume cannot bring it back)."""
    SKIPPED = "Skipped"
    """In scope, but owned by a controller the operator does not scale (DaemonSet, Job...)."""
    CORDONED = "Cordoned"
    """A GPU node, cordoned and tainted."""
    RESTORED = "Restored"
    """Back at the replicas it had before."""
    RELEASED = "Released"
    """No longer held; left at zero (a terminate's workloads, when it is deleted)."""
    STILL_HELD = "StillHeld"
    """Released by this Correction but still held by another one."""
    UNCORDONED = "Uncordoned"
    """A GPU node, back to its schedulability before, the taint removed."""
    GONE = "Gone"
    """The object was deleted by someone else."""
    FAILED = "Failed"


_SELECTOR_OPERATORS = frozenset({"In", "NotIn", "Exists", "DoesNotExist"})


@dataclass(frozen=True, slots=True)
class Requirement:
    """One label requirement of a selector (``matchLabels`` entries become ``In`` ones)."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this requirement (Kubernetes semantics)."""
        present = self.key in labels
        if self.operator == "In":
            return present and labels[self.key] in self.values
        if self.operator == "NotIn":
            return not present or labels[self.key] not in self.values
        if self.operator == "Exists":
            return present
        return not present


@dataclass(frozen=True, slots=True)
class Selector:
    """A Kubernetes label selector; every requirement must hold (an empty one selects all)."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)


@dataclass(frozen=True, slots=True)
class ClusterScope:
    """``spec.scope``: which workloads and nodes a Correction covers. Criteria are ANDed."""

    all: bool = False
    """No restriction (still subject to ``gpu_workloads_only``)."""
    namespaces: tuple[str, ...] = ()
    selector: Selector | None = None
    """Over the labels the operator reports for a workload (see ``scope.workload_labels``)."""
    gpu_workloads_only: bool = True
    nodes: tuple[str, ...] = ()
    """Only workloads with a pod on these nodes; for shutdown, fence only these nodes."""
    workloads: tuple[str, ...] = ()
    """Workload ids (``namespace/Kind/name``), as ``backstop workloads`` lists them."""

    @property
    def names_something(self) -> bool:
        """Whether any criterion is set; an empty scope selects nothing."""
        return bool(self.all or self.namespaces or self.selector or self.nodes or self.workloads)


@dataclass(frozen=True, slots=True)
class TargetRecord:
    """One entry of ``status.targets``."""

    kind: str
    namespace: str
    name: str
    state: TargetState
    previous_replicas: int | None = None
    message: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "state": self.state.value,
        }
        if self.previous_replicas is not None:
            data["previousReplicas"] = self.previous_replicas
        if self.message:
            data["message"] = self.message
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TargetRecord | None:
        """The record, or None for an entry this operator did not write."""
        try:
            state = TargetState(str(data.get("state", "")))
        except ValueError:
            return None
        previous = data.get("previousReplicas")
        return cls(
            kind=str(data.get("kind", "")),
            namespace=str(data.get("namespace", "")),
            name=str(data.get("name", "")),
            state=state,
            previous_replicas=previous if isinstance(previous, int) else None,
            message=str(data.get("message", "")),
        )


@dataclass(frozen=True, slots=True)
class CorrectionResource:
    """A Correction as read from the API server."""

    name: str
    uid: str
    generation: int
    resource_version: str
    action: Action
    reason: str
    scope: ClusterScope
    resumes: str = ""
    controller_correction_id: str = ""
    finalizers: tuple[str, ...] = ()
    deleting: bool = False
    phase: Phase = Phase.PENDING
    observed_generation: int = 0
    message: str = ""
    targets: tuple[TargetRecord, ...] = ()

    @property
    def settled(self) -> bool:
        """Settled for the current spec (the phase is final and was reached for it)."""
        return self.phase.settled and self.observed_generation == self.generation

    def reference(self) -> dict[str, str]:
        """The ``involvedObject`` of an Event about this Correction."""
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "resourceVersion": self.resource_version,
        }


def parse_selector(raw: object) -> Selector:
    """A ``metav1.LabelSelector`` (``matchLabels``, ``matchExpressions``) as a :class:`Selector`.

    Raises :class:`InvalidInput` naming what is wrong.
    """
    if not isinstance(raw, Mapping):
        raise InvalidInput("spec.scope.selector must be a label selector object")
    unknown = set(raw) - {"matchLabels", "matchExpressions"}
    if unknown:
        raise InvalidInput(
            f"spec.scope.selector has unknown field(s) {', '.join(sorted(unknown))}: "
            "use matchLabels and matchExpressions"
        )
    requirements: list[Requirement] = []
    match_labels = raw.get("matchLabels") or {}
    if not isinstance(match_labels, Mapping):
        raise InvalidInput("spec.scope.selector.matchLabels must map label keys to values")
    for key, value in match_labels.items():
        if not isinstance(value, str):
            raise InvalidInput(f"spec.scope.selector.matchLabels[{key!r}] must be a string")
        requirements.append(Requirement(str(key), "In", (value,)))
    expressions = raw.get("matchExpressions") or []
    if not isinstance(expressions, list):
        raise InvalidInput("spec.scope.selector.matchExpressions must be a list")
    for index, expr in enumerate(expressions):
        where = f"spec.scope.selector.matchExpressions[{index}]"
        if not isinstance(expr, Mapping) or not isinstance(expr.get("key"), str):
            raise InvalidInput(f"{where} needs a key")
        operator = expr.get("operator")
        if operator not in _SELECTOR_OPERATORS:
            raise InvalidInput(
                f"{where}.operator {operator!r} is not one of In, NotIn, Exists, DoesNotExist"
            )
        values = expr.get("values") or []
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise InvalidInput(f"{where}.values must be a list of strings")
        if operator in ("In", "NotIn") and not values:
            raise InvalidInput(f"{where}: {operator} needs at least one value")
        if operator in ("Exists", "DoesNotExist") and values:
            raise InvalidInput(f"{where}: {operator} takes no values")
        requirements.append(Requirement(expr["key"], str(operator), tuple(values)))
    return Selector(tuple(requirements))


def _strings(raw: object, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise InvalidInput(f"{where} must be a list of strings")
    return tuple(raw)


def parse_scope(raw: object) -> ClusterScope:
    """``spec.scope`` as a :class:`ClusterScope` (absent: an empty scope)."""
    if raw is None:
        return ClusterScope()
    if not isinstance(raw, Mapping):
        raise InvalidInput("spec.scope must be an object")
    selector = raw.get("selector")
    return ClusterScope(
        all=bool(raw.get("all", False)),
        namespaces=_strings(raw.get("namespaces"), "spec.scope.namespaces"),
        selector=parse_selector(selector) if selector is not None else None,
        gpu_workloads_only=bool(raw.get("gpuWorkloadsOnly", True)),
        nodes=_strings(raw.get("nodes"), "spec.scope.nodes"),
        workloads=_strings(raw.get("workloads"), "spec.scope.workloads"),
    )


def _phase(raw: object) -> Phase:
    try:
        return Phase(str(raw)) if raw else Phase.PENDING
    except ValueError:
        return Phase.PENDING


def parse_correction(obj: Mapping[str, Any]) -> CorrectionResource:
    """The Correction in ``obj`` (the API server's JSON).

    Raises :class:`InvalidInput` for a spec the schema lets through but the operator cannot act
    on (a malformed selector, an action it does not know).
    """
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    try:
        action = Action(str(spec.get("action", "")))
    except ValueError:
        action = Action.OBSERVE
    if action not in ACTIONS:
        raise InvalidInput(
            f"spec.action {spec.get('action')!r} is not one of pause, terminate, shutdown, resume"
        )
    targets = tuple(
        record
        for raw in status.get("targets") or []
        if isinstance(raw, Mapping) and (record := TargetRecord.from_json(raw)) is not None
    )
    observed = status.get("observedGeneration")
    return CorrectionResource(
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        generation=int(meta.get("generation") or 0),
        resource_version=str(meta.get("resourceVersion", "")),
        action=action,
        reason=str(spec.get("reason", "")),
        scope=parse_scope(spec.get("scope")),
        resumes=str(spec.get("resumes", "")),
        controller_correction_id=str(spec.get("controllerCorrectionId", "")),
        finalizers=tuple(meta.get("finalizers") or ()),
        deleting=bool(meta.get("deletionTimestamp")),
        phase=_phase(status.get("phase")),
        observed_generation=observed if isinstance(observed, int) else 0,
        message=str(status.get("message", "")),
        targets=targets,
    )
