"""Kubernetes attribution of workloads: pod, namespace and container labels, and GPU allocation.

A workload's pod UID comes from its cgroup path (:mod:`backstop.agent.pod_cgroups`), its pod,
namespace and container names from the kubelet's container log links
(:mod:`backstop.agent.container_logs`), keyed by the container id in that same path, and the
GPUs its container was allocated from the kubelet's PodResources API
(:mod:`backstop.agent.kubelet_client`). An attributed workload gets the labels
``backstop.io/namespace``, ``backstop.io/pod``, ``backstop.io/container`` (and
``backstop.io/pod-uid`` whenever the cgroup names one), so ``--namespace`` and ``--pod``
corrections reach it as any selector does.

``backstop.io/gpu-allocation`` says whether the container holds the GPUs it uses:
``unallocated`` when the kubelet lists the container and some GPU it has a context on is not
among its devices (a pod without a GPU request that the device plugin did not stop from
seeing every GPU), else ``allocated``. Nothing is judged when the kubelet does not list the
container (a view older than the container), or when the container holds MIG slices (NVML
names the parent GPU, the kubelet the slice), or when the devices the kubelet can allocate
name none of the node's GPUs by UUID or index (``GetAllocatableResources``).

What the kubelet and the links say is kept and refreshed every ``refresh_interval_s``, or
sooner (at most once per ``min_interval_s``) when a workload with a GPU appears in a pod's
container not seen at the last refresh (each such container once). A failing kubelet (no
socket, refused, slow past its budget) costs the allocation judgement only; a
view kept past ``stale_after_s`` without a successful refresh is dropped. Nothing is asked
while no workload is in a pod, so a node without Kubernetes pays nothing. The caller times
:meth:`PodAttribution.refresh` as a collector of its own.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

from backstop.agent.container_logs import read_container_links
from backstop.agent.kubelet_client import ContainerRef, PodResources
from backstop.agent.pod_cgroups import pod_uid_from_cgroup
from backstop.core.errors import BackstopError, CollectorError
from backstop.core.models import Workload
from backstop.core.scope import (
    CONTAINER_LABEL,
    GPU_ALLOCATION_LABEL,
    NAMESPACE_LABEL,
    POD_LABEL,
    POD_UID_LABEL,
    UNALLOCATED,
)

LABEL_NAMESPACE = NAMESPACE_LABEL
LABEL_POD = POD_LABEL
LABEL_CONTAINER = CONTAINER_LABEL
LABEL_POD_UID = POD_UID_LABEL
LABEL_GPU_ALLOCATION = GPU_ALLOCATION_LABEL
ALLOCATED = "allocated"
_MIG_PREFIX = "MIG-"


class PodResourcesSource(Protocol):
    def fetch(self) -> PodResources: ...

    def close(self) -> None: ...


class PodAttribution:
    """Labels workloads with their pod; see the module docstring."""

    def __init__(
        self,
        kubelet: PodResourcesSource | None,
        container_links: Path | None,
        *,
        refresh_interval_s: float = 10.0,
        min_interval_s: float = 1.0,
        stale_after_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kubelet = kubelet
        self._links_dir = container_links
        self._interval = refresh_interval_s
        self._min_interval = min_interval_s
        self._stale_after = stale_after_s
        self._clock = clock
        self._links: Mapping[str, ContainerRef] = MappingProxyType({})
        self._resources: PodResources | None = None
        self._resources_at: float | None = None
        self._last_try: float | None = None
        self._failed = False
        self._asked: frozenset[str] = frozenset()
        """Container ids of the workloads at the last refresh: each new one is asked once."""

    def close(self) -> None:
        if self._kubelet is not None:
            self._kubelet.close()

    def refresh(self, workloads: Sequence[Workload]) -> None:
        """Ask the kubelet and list the links again when due; raises what failed (the last
        good view is kept)."""
        now = self._clock()
        if not self._due(workloads, now) or not any(
            pod_uid_from_cgroup(w.fingerprint.cgroup) for w in workloads
        ):
            return  # not due, or no workload in a pod (a node without Kubernetes): not asked
        self._last_try = now
        self._asked = frozenset(w.fingerprint.container_id for w in workloads)
        errors: list[str] = []
        if self._links_dir is not None:
            try:
                self._links = read_container_links(self._links_dir)
            except CollectorError as exc:
                errors.append(exc.message)
        if self._kubelet is not None:
            try:
                self._resources, self._resources_at = self._kubelet.fetch(), now
            except BackstopError as exc:
                errors.append(exc.message)
                if self._resources_at is not None and now - self._resources_at > self._stale_after:
                    self._resources = None
        self._failed = bool(errors)
        if errors:
            raise CollectorError("; ".join(errors))

    def _due(self, workloads: Sequence[Workload], now: float) -> bool:
        last = self._last_try
        if last is None or now - last >= self._interval:
            return True
        if self._failed or now - last < self._min_interval:
            return False  # a failing kubelet is asked again at the interval only
        return any(
            w.fingerprint.gpus
            and w.fingerprint.container_id
            and w.fingerprint.container_id not in self._asked
            and pod_uid_from_cgroup(w.fingerprint.cgroup)
            for w in workloads
        )

    def label(
        self, workloads: Sequence[Workload], gpu_uuids: Mapping[str, str] | None = None
    ) -> list[Workload]:
        """The workloads with their pod labels; ``gpu_uuids`` maps GPU index (as text) to
        UUID, for a device plugin that names GPUs by index."""
        return [self._labelled(w, gpu_uuids or {}) for w in workloads]

    def _labelled(self, workload: Workload, gpu_uuids: Mapping[str, str]) -> Workload:
        if workload.unattributed:
            return workload
        fp = workload.fingerprint
        added: dict[str, str] = {}
        uid = pod_uid_from_cgroup(fp.cgroup)
        if uid:
            added[LABEL_POD_UID] = uid
        ref = self._links.get(fp.container_id) if uid and fp.container_id else None
        if ref is not None:
            added |= {LABEL_NAMESPACE: ref.namespace, LABEL_POD: ref.pod}
            added[LABEL_CONTAINER] = ref.container
            judged = self._allocation(ref, [g.gpu_uuid for g in fp.gpus], gpu_uuids)
            if judged:
                added[LABEL_GPU_ALLOCATION] = judged
        if not added:
            return workload
        return dataclasses.replace(workload, labels=MappingProxyType({**workload.labels, **added}))

    def _allocation(
        self, ref: ContainerRef, used: Sequence[str], gpu_uuids: Mapping[str, str]
    ) -> str:
        """``allocated``, ``unallocated`` or ``""`` (not judged)."""
        resources = self._resources
        if not used or resources is None or ref not in resources.containers:
            return ""
        devices = resources.containers[ref]
        if any(d.startswith(_MIG_PREFIX) for d in devices):
            return ""
        offered = resources.allocatable
        if offered and gpu_uuids and not offered & {*gpu_uuids, *gpu_uuids.values()}:
            return ""  # the plugin names GPUs in a way NVML does not: nothing to compare
        held = {gpu_uuids.get(d, d) for d in devices}
        return ALLOCATED if held.issuperset(used) else UNALLOCATED
