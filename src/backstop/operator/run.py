"""The operator daemon: watches, one reconcile worker, a periodic resync, and the controller link.

Tasks on one event loop: the worker (reconciles in a worker thread, one Correction at a time,
retrying failures with capped exponential backoff), the resync (every Correction, every
``resync_s``), and, with a controller, the cluster agent. Watch threads hop their events onto
the loop. Nothing is kept on disk but the report spool: what the operator did is written on the
objects themselves (annotations, taints) and in each Correction's status, so a restarted
operator picks up where the last one stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping

from kubernetes import client as k8s

from backstop.core.errors import BackstopError, InvalidInput, NotFound
from backstop.core.models import Action
from backstop.core.tasks import run_until_one_fails
from backstop.operator import marks
from backstop.operator.actions import Actions
from backstop.operator.cluster_agent import ClusterAgent
from backstop.operator.crd import CorrectionResource, Phase, parse_correction
from backstop.operator.events import EventRecorder
from backstop.operator.inventory import ClusterReader, scalable_view
from backstop.operator.kube import JsonObject, Kind, KubeApi, load_api_client
from backstop.operator.reconciler import Reconciler
from backstop.operator.scope import WorkloadKind, selects
from backstop.operator.settings import OperatorSettings
from backstop.operator.watchers import EventHandler, Watcher
from backstop.operator.workqueue import WorkQueue
from backstop.telemetry import sd_notify

log = logging.getLogger(__name__)

MAX_RETRY_S = 30.0
POLL_S = 0.5
_HOLDS = (Action.PAUSE, Action.TERMINATE, Action.SHUTDOWN)


def _active_hold(c: CorrectionResource) -> bool:
    return c.action in _HOLDS and not c.deleting and c.phase is not Phase.REVERTED


class Operator:
    """Reconciles Corrections; with a controller, also serves as the cluster's agent."""

    def __init__(self, settings: OperatorSettings, api_client: k8s.ApiClient | None = None) -> None:
        settings.validate()
        self.settings = settings
        self.kube = KubeApi(api_client or load_api_client(settings.kubeconfig))
        self.events = EventRecorder(self.kube)
        self.reader = ClusterReader(self.kube)
        self.reconciler = Reconciler(
            self.kube, self.reader, Actions(self.kube, self.events), self.events
        )
        self.queue = WorkQueue()
        self.corrections: dict[str, CorrectionResource] = {}
        """The latest version seen of each Correction (watch and resync)."""
        self._failures: dict[str, int] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self.agent = (
            ClusterAgent(
                settings,
                self.kube,
                self.reader,
                nudge=self.queue.add,
                wait_settled=self.wait_settled,
                holds=self.holds,
            )
            if settings.controller
            else None
        )

    # -- what the cluster agent needs -------------------------------------------------------

    def holds(self) -> Mapping[str, Action]:
        """The action of each Correction the operator knows."""
        return {name: c.action for name, c in self.corrections.items()}

    async def wait_settled(self, name: str, timeout_s: float) -> CorrectionResource | None:
        """Correction ``name`` once settled for its spec, or as it stands after ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            changed = self._changed.setdefault(name, asyncio.Event())
            changed.clear()
            try:
                found = parse_correction(
                    await asyncio.to_thread(self.kube.get, Kind.CORRECTION, name)
                )
            except NotFound:
                return None
            except BackstopError:  # unreadable or the API server away: look again
                found = None
            left = deadline - loop.time()
            if found is not None and (found.settled or left <= 0):
                return found
            if left <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(POLL_S, left))

    # -- events -----------------------------------------------------------------------------

    def _on_correction(self, kind: str, obj: JsonObject) -> None:
        name = str((obj.get("metadata") or {}).get("name", ""))
        if kind == "DELETED":
            self.corrections.pop(name, None)
            return
        try:
            c = parse_correction(obj)
        except InvalidInput:
            self.queue.add(name)
            return
        before = self.corrections.get(name)
        self.corrections[name] = c
        if (
            before is None
            or c.generation != before.generation
            or c.deleting != before.deleting
            or c.finalizers != before.finalizers
            or not c.phase.settled
        ):
            self.queue.add(name)

    def _on_workload(self, kind: WorkloadKind, event: str, obj: JsonObject) -> None:
        if event not in ("ADDED", "MODIFIED"):
            return
        holding = marks.holders(obj)
        if holding:
            if marks.replicas(obj) > 0:  # scaled back up while held: hold it again now
                for name in holding:
                    self.queue.add(name)
            return
        meta = obj.get("metadata") or {}
        observed = (obj.get("status") or {}).get("observedGeneration")
        if event == "MODIFIED" and observed == meta.get("generation"):
            return  # a status update: nothing new for the scope
        view = scalable_view(kind, obj)
        for c in self.corrections.values():
            if _active_hold(c) and selects(c.scope, view, ignore_nodes=True):
                self.queue.add(c.name)

    # -- tasks ------------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            name = await self.queue.get()
            try:
                phase = await asyncio.to_thread(self.reconciler.reconcile, name)
            except BackstopError as exc:
                failures = self._failures[name] = self._failures.get(name, 0) + 1
                delay = min(MAX_RETRY_S, 0.5 * 2**failures)
                log.warning(
                    "reconcile failed; retrying",
                    extra={"correction_id": name, "error": exc.message, "retry_s": delay},
                )
                self.queue.add_after(name, delay)
            except Exception:
                log.exception("reconcile crashed; retrying", extra={"correction_id": name})
                self.queue.add_after(name, MAX_RETRY_S)
            else:
                self._failures.pop(name, None)
                if phase is Phase.FAILED:
                    self.queue.add_after(name, self.settings.resync_s)
            finally:
                self.queue.done(name)
                changed = self._changed.get(name)
                if changed is not None:
                    changed.set()

    async def resync(self) -> None:
        """Queue every Correction that may need work (and refresh the cache)."""
        items, _ = await asyncio.to_thread(self.kube.list, Kind.CORRECTION)
        present = set()
        for obj in items:
            name = str((obj.get("metadata") or {}).get("name", ""))
            present.add(name)
            try:
                c = parse_correction(obj)
            except InvalidInput:
                self.queue.add(name)
                continue
            self.corrections[name] = c
            finished = c.phase is Phase.REVERTED or (
                c.action is Action.RESUME and c.phase is Phase.APPLIED and c.settled
            )
            if c.deleting or not finished:
                self.queue.add(name)
        for gone in set(self.corrections) - present:
            del self.corrections[gone]

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.resync_s)
            try:
                await self.resync()
            except BackstopError as exc:
                log.warning("resync failed", extra={"error": exc.message})

    async def run(self) -> None:
        """Run until cancelled. Raises :class:`NotFound` when the CRD is not installed."""
        try:
            await self.resync()
        except NotFound as exc:
            raise NotFound(
                "the Correction resource is not installed in this cluster: "
                "kubectl apply -f helm/backstop/crds/corrections.backstop.io.yaml"
            ) from exc
        loop = asyncio.get_running_loop()

        def on_correction(event: str, obj: JsonObject) -> None:
            loop.call_soon_threadsafe(self._on_correction, event, obj)

        def on_workload(kind: WorkloadKind) -> EventHandler:
            def forward(event: str, obj: JsonObject) -> None:
                loop.call_soon_threadsafe(self._on_workload, kind, event, obj)

            return forward

        timeout = self.settings.watch_timeout_s
        watchers = [
            Watcher(self.kube, Kind.CORRECTION, on_correction, timeout),
            Watcher(self.kube, Kind.DEPLOYMENT, on_workload(WorkloadKind.DEPLOYMENT), timeout),
            Watcher(self.kube, Kind.STATEFULSET, on_workload(WorkloadKind.STATEFULSET), timeout),
        ]
        for watcher in watchers:
            watcher.start()
        tasks = [
            asyncio.create_task(self._worker(), name="reconcile"),
            asyncio.create_task(self._resync_loop(), name="resync"),
        ]
        if self.agent is not None:
            tasks.append(asyncio.create_task(self.agent.run(), name="cluster-agent"))
        log.info(
            "operator started",
            extra={
                "pid": os.getpid(),
                "cluster": self.settings.cluster_name,
                "controller": self.settings.controller or "-",
                "corrections": len(self.corrections),
            },
        )

        def status() -> str:
            held = len(self.corrections)
            return f"watching cluster {self.settings.cluster_name}; {held} corrections"

        try:
            async with sd_notify.serving(status):  # ready: the resync above is done
                await run_until_one_fails(tasks)
        finally:
            for watcher in watchers:
                watcher.stop()
            self.queue.close()
