"""The Workload record discovery reports, put together from what it found about a group.

Owns the ``backstop.io/*`` labels the agent sets, the GPU use (memory, SM share, MIG instance)
a workload has per GPU,
the moving average and the recent window of its GPU utilisation (for the behaviour class)
and the assembly of the :class:`~backstop.core.models.Workload` with its fingerprint.
Finding the processes, their sockets and weights is :mod:`backstop.agent.discovery`'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import MappingProxyType

from backstop.agent.collectors.processes import ProcInfo
from backstop.agent.fingerprint.behaviour_window import BehaviourWindow
from backstop.agent.fingerprint.weights import model_hash
from backstop.agent.grouping import WorkloadGroup
from backstop.core.models import (
    Behaviour,
    Fingerprint,
    GpuProcess,
    GpuUse,
    IdentifiedModel,
    WeightsFile,
    Workload,
)
from backstop.core.scope import KIND_LABEL

UTIL_SMOOTHING = 0.3
"""Weight of the newest sample in the moving average of a workload's GPU utilisation."""

LABEL_FRAMEWORK = "backstop.io/framework"
LABEL_BEHAVIOUR = "backstop.io/behaviour"
LABEL_KIND = KIND_LABEL
LABEL_NAME = "backstop.io/name"


class UtilisationAverage:
    """Per workload id, the moving average of the busiest GPU it uses and its recent shape."""

    def __init__(self) -> None:
        self._util: dict[str, float] = {}
        self._windows: dict[str, BehaviourWindow] = {}

    def update(self, wid: str, samples: Sequence[int]) -> float | None:
        """Fold in the newest samples; the last average (``None``: never one) without any."""
        if not samples:
            return self._util.get(wid)
        current = float(max(samples))
        self._windows.setdefault(wid, BehaviourWindow()).push(current)
        previous = self._util.get(wid)
        value = (
            current
            if previous is None
            else (UTIL_SMOOTHING * current + (1 - UTIL_SMOOTHING) * previous)
        )
        self._util[wid] = value
        return value

    def window(self, wid: str) -> BehaviourWindow | None:
        """The last samples of ``wid`` (``None``: never one), for the behaviour class."""
        return self._windows.get(wid)

    def retain(self, live: set[str]) -> None:
        """Forget the workloads not in ``live``."""
        for gone in self._util.keys() - live:
            del self._util[gone]
        for gone in self._windows.keys() - live:
            del self._windows[gone]


def gpu_uses(pids: Iterable[int], gpu_processes: Sequence[GpuProcess]) -> tuple[GpuUse, ...]:
    """The GPU use of the processes ``pids``: see :func:`summed_gpu_use`."""
    members = set(pids)
    return summed_gpu_use(gp for gp in gpu_processes if gp.pid in members)


def summed_gpu_use(processes: Iterable[GpuProcess]) -> tuple[GpuUse, ...]:
    """Per GPU (ordered by uuid): the memory the processes hold, their SM share (summed, at
    most 100; ``None`` if NVML gave any of them none) and their MIG instance (``None`` unless
    all of them share one)."""
    by_gpu: dict[str, list[GpuProcess]] = {}
    for gp in processes:
        by_gpu.setdefault(gp.gpu_uuid, []).append(gp)
    uses = []
    for uuid in sorted(by_gpu):
        procs = by_gpu[uuid]
        shares = [gp.sm_util_pct for gp in procs]
        instances = {(gp.gpu_instance_id, gp.compute_instance_id) for gp in procs}
        gi, ci = instances.pop() if len(instances) == 1 else (None, None)
        uses.append(
            GpuUse(
                uuid,
                sum(gp.used_memory_bytes or 0 for gp in procs),
                sm_util_pct=None
                if None in shares
                else min(100, sum(s for s in shares if s is not None)),
                gpu_instance_id=gi,
                compute_instance_id=ci,
            )
        )
    return tuple(uses)


def assemble_workload(
    node_id: str,
    wid: str,
    group: WorkloadGroup,
    root: ProcInfo,
    *,
    cmdline: tuple[str, ...],
    framework: str,
    weights: tuple[WeightsFile, ...],
    ports: tuple[int, ...],
    gpus: tuple[GpuUse, ...],
    behaviour: tuple[Behaviour, float],
    model: IdentifiedModel | None = None,
) -> Workload:
    """The workload record with its fingerprint and labels (empty label values left out)."""
    kind, confidence = behaviour
    labels = {
        LABEL_FRAMEWORK: framework,
        LABEL_BEHAVIOUR: kind.value,
        LABEL_KIND: "container" if group.container_id else "process",
        LABEL_NAME: root.name,
    }
    return Workload(
        workload_id=wid,
        node_id=node_id,
        root_pid=root.pid,
        pids=group.pids,
        fingerprint=Fingerprint(
            exe=root.exe,
            cmdline=cmdline,
            cgroup=root.cgroup,
            container_id=group.container_id or root.container_id,
            framework=framework,
            weights=weights,
            listening_ports=ports,
            gpus=gpus,
            behaviour=kind,
            behaviour_confidence=confidence,
            model_hash=model_hash(weights),
            model=model,
        ),
        labels=MappingProxyType({k: v for k, v in labels.items() if v}),
        started_at_s=root.create_time,
    )
