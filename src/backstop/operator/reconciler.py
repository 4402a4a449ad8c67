"""Drives one Correction to its goal, level-triggered: the same call after a restart, a
conflict or a resync finds what is already done and does only the rest.

Phases (``status.phase``)::

    pause | terminate | shutdown:  Pending -> Applying -> Applied | Failed
                                   -> Reverting -> Reverted       (a resume names it)
    resume:                        Pending -> Applied | Failed
    deleted (finalizer):           reverted first, then the finalizer is removed

While a hold is Applied every reconcile re-checks it: a held workload scaled back up is scaled
to zero again, a new workload that falls into the scope is held too, a new bare pod deleted.
A terminate is not undone by resume (the ladder's rule: terminate is final); deleting it
releases its workloads, which stay at zero replicas.

Writes to the Correction carry its ``resourceVersion``; a 409 Conflict (someone changed it
meanwhile) starts the reconcile over from a fresh read.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from backstop.core.errors import Conflict, InvalidInput, NotFound
from backstop.core.models import Action
from backstop.operator import status as outcome
from backstop.operator.actions import Actions
from backstop.operator.crd import (
    FINALIZER,
    CorrectionResource,
    Phase,
    TargetRecord,
    TargetState,
    parse_correction,
)
from backstop.operator.events import EventRecorder
from backstop.operator.inventory import ClusterReader
from backstop.operator.kube import Kind, KubeApi
from backstop.operator.scope import fences, selects

log = logging.getLogger(__name__)

MAX_RESTARTS = 5
_KEPT_AFTER_REVERT = (
    TargetState.DELETED,
    TargetState.GONE,
    TargetState.RESTORED,
    TargetState.RELEASED,
    TargetState.UNCORDONED,
    TargetState.STILL_HELD,
)
"""Records of a previous pass that a revert keeps (what it did, or what no longer exists)."""


class Reconciler:
    """Reconciles Corrections by name; not thread-safe (one worker calls it)."""

    def __init__(
        self, kube: KubeApi, reader: ClusterReader, actions: Actions, events: EventRecorder
    ) -> None:
        self._kube = kube
        self._reader = reader
        self._actions = actions
        self._events = events

    def reconcile(self, name: str) -> Phase | None:
        """One pass over Correction ``name``; its phase afterwards (None: it is gone)."""
        for _ in range(MAX_RESTARTS):
            try:
                obj = self._kube.get(Kind.CORRECTION, name)
            except NotFound:
                return None
            try:
                return self._reconcile(obj)
            except Conflict as exc:
                log.info(
                    "Correction changed while reconciling; starting over",
                    extra={"correction_id": name, "error": exc.message},
                )
        raise Conflict(f"Correction {name} kept changing during {MAX_RESTARTS} reconciles")

    def _reconcile(self, obj: Mapping[str, Any]) -> Phase | None:
        try:
            c = parse_correction(obj)
        except InvalidInput as exc:
            return self._refuse(obj, exc.message)
        if c.deleting:
            return self._finalize(c)
        if c.action is Action.RESUME:
            return self._resume(c)
        return self._enforce(c)

    # -- status -----------------------------------------------------------------------------

    def _set_status(
        self, c: CorrectionResource, phase: Phase, message: str, targets: Sequence[TargetRecord]
    ) -> CorrectionResource:
        body = outcome.status_body(phase, message, targets, c.generation)
        current = outcome.status_body(c.phase, c.message, c.targets, c.observed_generation)
        if body == current:
            return c
        written = self._kube.patch_correction_status(
            c.name, {"metadata": {"resourceVersion": c.resource_version}, "status": body}
        )
        log.info(
            "Correction status",
            extra={"correction_id": c.name, "phase": phase.value, "detail": message},
        )
        return _refreshed(c, written)

    def _refuse(self, obj: Mapping[str, Any], message: str) -> Phase:
        """A spec the operator cannot act on: Failed, with the reason."""
        meta = obj.get("metadata") or {}
        status = obj.get("status") or {}
        generation = int(meta.get("generation") or 0)
        if (
            status.get("phase") != Phase.FAILED.value
            or status.get("message") != message
            or status.get("observedGeneration") != generation
        ):
            self._kube.patch_correction_status(
                str(meta.get("name", "")),
                {
                    "metadata": {"resourceVersion": meta.get("resourceVersion")},
                    "status": outcome.status_body(Phase.FAILED, message, [], generation),
                },
            )
        return Phase.FAILED

    def _announce(
        self, c: CorrectionResource, reason: str, message: str, *, warning: bool = False
    ) -> None:
        self._events.emit(c.reference(), reason, message, warning=warning)

    # -- pause, terminate, shutdown ---------------------------------------------------------

    def _enforce(self, c: CorrectionResource) -> Phase:
        if c.phase is Phase.REVERTED:
            return c.phase
        if c.phase is Phase.REVERTING:  # a resume was interrupted: finish it
            done, _, _ = self._finish_revert(c, f"Correction {c.name} resumed", "a resume")
            return Phase.REVERTED if done else Phase.FAILED
        if FINALIZER not in c.finalizers:
            c = self._patch_meta(c, {"finalizers": [*c.finalizers, FINALIZER]})
        if c.phase is Phase.PENDING:
            c = self._set_status(c, Phase.APPLYING, f"applying {c.action.value}", c.targets)
        if c.scope.names_something:
            targets = self._apply(c)
            message = outcome.summarize_apply(targets)
        else:
            targets, message = [], outcome.EMPTY_SCOPE
        phase = outcome.phase_of(targets, Phase.APPLIED)
        before = c.phase
        c = self._set_status(c, phase, message, targets)
        if phase is not before:
            self._announce(
                c,
                "BackstopApplied" if phase is Phase.APPLIED else "BackstopFailed",
                f"{c.action.value}: {message}",
                warning=phase is Phase.FAILED,
            )
        return phase

    def _apply(self, c: CorrectionResource) -> list[TargetRecord]:
        recorded = {t.key: t for t in c.targets}
        records: list[TargetRecord] = []
        seen: set[tuple[str, str, str]] = set()
        if c.action is Action.SHUTDOWN:
            # Fence first, so nothing scaled down below lands anywhere new meanwhile.
            for node in self._reader.gpu_nodes():
                if fences(c.scope, node) or c.name in node.holders:
                    records.append(self._actions.fence(node, c))
                    seen.add(("Node", "", node.name))
        for w in self._reader.workloads(c.scope.namespaces):
            if c.name not in w.holders and not selects(c.scope, w):
                continue
            seen.add(w.key)
            if w.kind.scalable:
                before = recorded.get(w.key)
                records.append(
                    self._actions.hold(w, c, before.previous_replicas if before else None)
                )
            elif w.controller:
                records.append(
                    TargetRecord(
                        "Pod",
                        w.namespace,
                        w.name,
                        TargetState.SKIPPED,
                        None,
                        f"owned by {w.controller}",
                    )
                )
            else:
                records.append(self._actions.delete_pod(w, c))
        for t in c.targets:
            if t.key in seen:
                continue
            if t.state in (TargetState.DELETED, TargetState.GONE):
                records.append(t)
            elif t.state in (TargetState.SCALED, TargetState.CORDONED):
                records.append(
                    dataclasses.replace(t, state=TargetState.GONE, message="deleted meanwhile")
                )
        return records

    # -- revert -----------------------------------------------------------------------------

    def _revert(self, c: CorrectionResource, why: str) -> list[TargetRecord]:
        """Release every hold and fence of ``c``; terminate's workloads stay at zero."""
        restore = c.action is not Action.TERMINATE
        records: list[TargetRecord] = []
        for w in self._reader.workloads(c.scope.namespaces):
            if w.kind.scalable:
                released = self._actions.release(w, c, restore=restore, why=why)
                if released is not None:
                    records.append(released)
        for node in self._reader.gpu_nodes():
            unfenced = self._actions.unfence(node, c, why=why)
            if unfenced is not None:
                records.append(unfenced)
        done = {t.key for t in records}
        undone = TargetState.RESTORED if restore else TargetState.RELEASED
        for t in c.targets:
            if t.key in done:
                continue
            if t.state is TargetState.SCALED:
                # Released by an earlier pass that was interrupted before it wrote the status.
                records.append(dataclasses.replace(t, state=undone))
            elif t.state is TargetState.CORDONED:
                records.append(dataclasses.replace(t, state=TargetState.UNCORDONED))
            elif t.state in _KEPT_AFTER_REVERT:
                records.append(t)
        return records

    def _finish_revert(
        self, c: CorrectionResource, why: str, by: str
    ) -> tuple[bool, str, list[TargetRecord]]:
        """Revert ``c`` and record it: Reverted, or still Reverting when something failed."""
        records = self._revert(c, why)
        message = outcome.summarize_revert(records)
        if outcome.phase_of(records, Phase.REVERTED) is Phase.FAILED:
            self._set_status(c, Phase.REVERTING, message, records)
            return False, message, records
        self._set_status(c, Phase.REVERTED, f"reverted by {by}: {message}", records)
        self._announce(c, "BackstopReverted", f"{why}: {message}")
        return True, message, records

    def _resumable(self, r: CorrectionResource) -> tuple[CorrectionResource | None, str]:
        """The Correction ``r`` resumes, or why it cannot be resumed."""
        try:
            original = parse_correction(self._kube.get(Kind.CORRECTION, r.resumes))
        except NotFound:
            return None, f"there is no Correction named {r.resumes!r} to resume"
        except InvalidInput as exc:
            return None, f"{r.resumes} cannot be read: {exc.message}"
        if original.action is Action.RESUME:
            return None, f"{original.name} is itself a resume; name the Correction it resumed"
        if original.action is Action.TERMINATE:
            return None, (
                f"{original.name} is a terminate, which resume does not undo; delete it to "
                "release its workloads (they stay at 0 replicas)"
            )
        return original, ""

    def _resume(self, r: CorrectionResource) -> Phase:
        if r.settled and r.phase is Phase.APPLIED:
            return r.phase
        original, problem = self._resumable(r)
        if original is None:
            return self._fail(r, problem)
        if original.phase is Phase.REVERTED:
            message = f"{original.name} was already reverted; nothing to do"
            self._set_status(r, Phase.APPLIED, message, [])
            return Phase.APPLIED
        original = self._set_status(
            original, Phase.REVERTING, f"being reverted by {r.name}", original.targets
        )
        done, message, records = self._finish_revert(
            original, f"Correction {original.name} resumed by {r.name}", r.name
        )
        if not done:
            return self._fail(r, message, records)
        self._set_status(r, Phase.APPLIED, message, records)
        self._announce(r, "BackstopApplied", f"resume of {original.name}: {message}")
        return Phase.APPLIED

    def _fail(
        self, c: CorrectionResource, message: str, targets: Sequence[TargetRecord] = ()
    ) -> Phase:
        before = c.phase
        self._set_status(c, Phase.FAILED, message, targets)
        if before is not Phase.FAILED:
            self._announce(c, "BackstopFailed", message, warning=True)
        return Phase.FAILED

    # -- deletion ---------------------------------------------------------------------------

    def _finalize(self, c: CorrectionResource) -> Phase | None:
        if FINALIZER not in c.finalizers:
            return None
        if c.action is not Action.RESUME and c.phase is not Phase.REVERTED:
            why = f"Correction {c.name} was deleted"
            records = self._revert(c, why)
            message = outcome.summarize_revert(records)
            if outcome.phase_of(records, Phase.REVERTED) is Phase.FAILED:
                self._set_status(
                    c, Phase.FAILED, f"could not revert before deletion: {message}", records
                )
                return Phase.FAILED
            self._announce(c, "BackstopReverted", f"{why}: {message}")
        self._patch_meta(c, {"finalizers": [f for f in c.finalizers if f != FINALIZER]})
        log.info("Correction finalized", extra={"correction_id": c.name})
        return None

    def _patch_meta(self, c: CorrectionResource, meta: Mapping[str, Any]) -> CorrectionResource:
        written = self._kube.patch(
            Kind.CORRECTION,
            c.name,
            {"metadata": {"resourceVersion": c.resource_version, **meta}},
        )
        return _refreshed(c, written)


def _refreshed(c: CorrectionResource, written: Mapping[str, Any]) -> CorrectionResource:
    try:
        return parse_correction(written)
    except InvalidInput:
        version = str((written.get("metadata") or {}).get("resourceVersion", c.resource_version))
        return dataclasses.replace(c, resource_version=version)
