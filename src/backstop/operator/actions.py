"""Apply and undo one correction on one object: hold, release, delete, fence, unfence.

Each action reads nothing it was not given: it computes a patch from the object as listed
(``marks``), writes it with that object's ``resourceVersion`` as a precondition, and on 409
Conflict waits a short, growing, jittered while (``conflict_delay_s``: 10 ms doubling, so that
a Deployment whose status is being rewritten by its controller settles), re-reads the object and
computes again (at most ``MAX_CONFLICT_RETRIES`` times, about 1.3 s of waiting in all). A
patch that is ``None`` means the object is already as wanted, so re-running an action (after a
restart, a conflict or a resync) writes nothing. Every change gets an Event on the object.

Outcomes are :class:`~backstop.operator.crd.TargetRecord` values. A permanent error on one
object (forbidden, invalid) becomes a Failed record and does not stop the others; a temporary
one (:class:`Unavailable`: the API server is away) propagates, and the whole Correction is
reconciled again later.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from backstop.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from backstop.core.models import Action
from backstop.operator import marks
from backstop.operator.crd import CorrectionResource, TargetRecord, TargetState
from backstop.operator.events import EventRecorder, reference
from backstop.operator.kube import Kind, KubeApi
from backstop.operator.scope import NodeView, WorkloadView

log = logging.getLogger(__name__)

MAX_CONFLICT_RETRIES = 8
_API_VERSIONS = {"Deployment": "apps/v1", "StatefulSet": "apps/v1", "Pod": "v1", "Node": "v1"}
HOLD_REASONS = {
    Action.PAUSE: "BackstopPaused",
    Action.TERMINATE: "BackstopTerminated",
    Action.SHUTDOWN: "BackstopShutdown",
}


def conflict_delay_s(attempt: int) -> float:
    """How long to wait after the ``attempt``-th conflict (from 0): 10 ms doubling, ±25%."""
    return 0.01 * (1 << attempt) * random.uniform(0.75, 1.25)  # noqa: S311 (jitter)


class _Plan(Protocol):
    @property
    def patch(self) -> dict[str, Any] | None: ...


P = TypeVar("P", bound=_Plan)
_PERMANENT = (PermissionDenied, InvalidInput, Conflict)


class Actions:
    """The five actions, over one API client and one Event recorder."""

    def __init__(self, kube: KubeApi, events: EventRecorder) -> None:
        self._kube = kube
        self._events = events

    def _converge(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        obj: Mapping[str, Any],
        plan: Callable[[Mapping[str, Any]], P],
    ) -> tuple[P, Mapping[str, Any], bool]:
        """Plan and patch until the write lands or there is nothing to write.

        Returns the last plan, the object it was computed from, and whether it was written.
        """
        for attempt in range(MAX_CONFLICT_RETRIES):
            step = plan(obj)
            if step.patch is None:
                return step, obj, False
            try:
                self._kube.patch(kind, name, step.patch, namespace)
            except Conflict:
                log.info(
                    "conflict; reading the object again",
                    extra={"kind": kind.value, "object": f"{namespace}/{name}"},
                )
                time.sleep(conflict_delay_s(attempt))
                obj = self._kube.get(kind, name, namespace)
                continue
            return step, obj, True
        raise Conflict(
            f"{kind.value} {namespace}/{name} kept changing under "
            f"{MAX_CONFLICT_RETRIES} attempts; it will be retried"
        )

    def _event(
        self, obj: Mapping[str, Any], kind: str, reason: str, message: str, **kw: bool
    ) -> None:
        self._events.emit(reference(obj, _API_VERSIONS[kind], kind), reason, message, **kw)

    # -- workloads --------------------------------------------------------------------------

    def hold(
        self, w: WorkloadView, c: CorrectionResource, recorded: int | None = None
    ) -> TargetRecord:
        """Scale a Deployment or StatefulSet to zero and keep it there for ``c``."""

        def record(
            state: TargetState, previous: int | None = None, message: str = ""
        ) -> TargetRecord:
            return TargetRecord(w.kind.value, w.namespace, w.name, state, previous, message)

        kind = Kind(w.kind.value)
        try:
            plan, obj, wrote = self._converge(
                kind, w.namespace, w.name, w.raw, lambda o: marks.plan_hold(o, c.name, recorded)
            )
        except NotFound:
            return record(TargetState.GONE, recorded, "deleted meanwhile")
        except _PERMANENT as exc:
            return record(TargetState.FAILED, recorded, exc.message)
        if wrote and plan.newly_held:
            self._event(
                obj,
                w.kind.value,
                HOLD_REASONS[c.action],
                f"scaled from {plan.scaled_from} to 0 replicas by Correction {c.name} "
                f"({c.action.value}): {c.reason}",
            )
        elif wrote and plan.scaled_from:
            self._event(
                obj,
                w.kind.value,
                "BackstopHeld",
                f"scaled back from {plan.scaled_from} to 0 replicas: Correction {c.name} "
                f"({c.action.value}) is in force",
                warning=True,
            )
        if wrote:
            log.warning(
                "workload held at zero",
                extra={
                    "workload_id": w.workload_id,
                    "correction_id": c.name,
                    "scaled_from": plan.scaled_from,
                    "previous": plan.previous,
                },
            )
        return record(TargetState.SCALED, plan.previous)

    def release(
        self, w: WorkloadView, c: CorrectionResource, *, restore: bool, why: str
    ) -> TargetRecord | None:
        """Undo ``c``'s hold; ``restore`` scales back to the recorded replicas. None: not held."""

        def record(state: TargetState, previous: int | None, message: str = "") -> TargetRecord:
            return TargetRecord(w.kind.value, w.namespace, w.name, state, previous, message)

        if c.name not in w.holders:
            return None
        kind = Kind(w.kind.value)
        try:
            plan, obj, wrote = self._converge(
                kind,
                w.namespace,
                w.name,
                w.raw,
                lambda o: marks.plan_release(o, c.name, restore=restore),
            )
        except NotFound:
            return record(TargetState.GONE, w.previous_replicas, "deleted meanwhile")
        except _PERMANENT as exc:
            return record(TargetState.FAILED, w.previous_replicas, exc.message)
        if not wrote:
            return None
        if plan.remaining:
            message = f"still held by {', '.join(plan.remaining)}"
            reason, state, note = "BackstopStillHeld", TargetState.STILL_HELD, f"{why}; {message}"
        elif plan.restored_to is not None:
            message, reason, state = "", "BackstopResumed", TargetState.RESTORED
            note = f"restored to {plan.restored_to} replicas: {why}"
        else:
            message, reason, state = "", "BackstopReleased", TargetState.RELEASED
            note = f"released at 0 replicas ({plan.previous} before Correction {c.name}): {why}"
        self._event(obj, w.kind.value, reason, note)
        return record(state, plan.previous, message)

    def delete_pod(self, w: WorkloadView, c: CorrectionResource) -> TargetRecord:
        """Delete a bare pod (only the incarnation listed: the uid is a precondition)."""

        def record(state: TargetState, message: str = "") -> TargetRecord:
            return TargetRecord("Pod", w.namespace, w.name, state, None, message)

        if w.deleting:
            return record(TargetState.DELETED, "terminating")
        self._event(
            w.raw,
            "Pod",
            "BackstopPodDeleted",
            f"deleted by Correction {c.name} ({c.action.value}): {c.reason}",
            warning=True,
        )
        try:
            self._kube.delete_pod(w.name, w.namespace, w.uid)
        except NotFound:
            return record(TargetState.DELETED, "already gone")
        except Conflict:
            return record(TargetState.GONE, "replaced by a new pod of the same name")
        except _PERMANENT as exc:
            return record(TargetState.FAILED, exc.message)
        log.warning(
            "bare pod deleted", extra={"workload_id": w.workload_id, "correction_id": c.name}
        )
        return record(TargetState.DELETED)

    # -- nodes ------------------------------------------------------------------------------

    def _converge_node(
        self, node: NodeView, plan: Callable[[Mapping[str, Any]], P]
    ) -> tuple[P, Mapping[str, Any], bool] | TargetRecord:
        """:meth:`_converge` on ``node``, or its Gone or Failed record when that cannot be."""
        try:
            return self._converge(Kind.NODE, "", node.name, node.raw, plan)
        except NotFound:
            return _node_record(node, TargetState.GONE, "deleted meanwhile")
        except _PERMANENT as exc:
            return _node_record(node, TargetState.FAILED, exc.message)

    def fence(self, node: NodeView, c: CorrectionResource) -> TargetRecord:
        """Cordon ``node`` and taint it so nothing new is scheduled there."""
        done = self._converge_node(node, lambda o: marks.plan_fence(o, c.name))
        if isinstance(done, TargetRecord):
            return done
        plan, obj, wrote = done
        if wrote:
            self._event(
                obj,
                "Node",
                "BackstopNodeFenced",
                f"cordoned and tainted {marks.TAINT_KEY}:{marks.TAINT_EFFECT} by Correction "
                f"{c.name} (shutdown): {c.reason}",
                warning=True,
            )
            log.warning("node fenced", extra={"node": node.name, "correction_id": c.name})
        note = "was cordoned before" if plan.was_unschedulable else ""
        return _node_record(node, TargetState.CORDONED, note)

    def unfence(self, node: NodeView, c: CorrectionResource, *, why: str) -> TargetRecord | None:
        """Lift ``c``'s fence from ``node``. None: ``c`` did not fence it."""
        if c.name not in node.holders:
            return None
        done = self._converge_node(node, lambda o: marks.plan_unfence(o, c.name))
        if isinstance(done, TargetRecord):
            return done
        plan, obj, wrote = done
        if not wrote:
            return None
        if plan.remaining:
            message = f"still fenced by {', '.join(plan.remaining)}"
            self._event(obj, "Node", "BackstopStillFenced", f"{why}; {message}")
            return _node_record(node, TargetState.STILL_HELD, message)
        note = "left cordoned: it was cordoned before the shutdown" if plan.left_cordoned else ""
        self._event(
            obj,
            "Node",
            "BackstopNodeUnfenced",
            f"taint removed{', ' + note if note else ''}: {why}",
        )
        log.warning("node unfenced", extra={"node": node.name, "correction_id": c.name})
        return _node_record(node, TargetState.UNCORDONED, note)


def _node_record(node: NodeView, state: TargetState, message: str = "") -> TargetRecord:
    return TargetRecord("Node", "", node.name, state, None, message)
