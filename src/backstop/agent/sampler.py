"""One sample of the node: run each collector (timed, isolated), then discover workloads.

Pipeline (dcgm-exporter style): collect (NVML, processes) → transform (group processes into
workloads, fingerprint them, add serving and network use) → publish (the daemon reports
it). A failing collector never fails the sample: its section is empty, its success metric
is 0, and the error is logged once per change.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from backstop.agent import dcgm_series, metrics
from backstop.agent.collectors.nvml import GpuSnapshot, NvmlBackend
from backstop.agent.collectors.processes import ProcessCollector, ProcessSnapshot
from backstop.agent.discovery import WorkloadDiscovery
from backstop.agent.network_use import NetworkTracker
from backstop.agent.pod_attribution import PodAttribution
from backstop.agent.serving.tracker import ServingTracker
from backstop.agent.unattributed import RecentlyAttributed, plausible, unattributed_workloads
from backstop.core.errors import BackstopError
from backstop.core.models import GpuSample, Workload

log = logging.getLogger(__name__)

T = TypeVar("T")

SERVING_BUDGET_S = 1.0
"""Time one sample may spend asking model servers; the rest keep their previous stats."""


@dataclass(frozen=True, slots=True)
class NodeSample:
    sampled_at_s: float
    gpus: tuple[GpuSample, ...]
    workloads: tuple[Workload, ...]
    errors: tuple[str, ...] = ()


class Sampler:
    def __init__(
        self,
        nvml: NvmlBackend | None,
        processes: ProcessCollector,
        discovery: WorkloadDiscovery,
        *,
        cgroup_prefixes: tuple[str, ...] = (),
        serving: ServingTracker | None = None,
        pods: PodAttribution | None = None,
        network: NetworkTracker | None = None,
    ) -> None:
        self._nvml = nvml
        self._pods = pods
        self._serving = serving
        self._network = network
        self._recent = RecentlyAttributed()
        self._processes = processes
        self._discovery = discovery
        self._prefixes = tuple(p.rstrip("/") + "/" for p in cgroup_prefixes)
        self._last_errors: dict[str, str] = {}

    def _timed(self, name: str, collect: Callable[[], T], empty: T) -> tuple[T, str]:
        start = time.perf_counter()
        try:
            result, error = collect(), ""
        except BackstopError as exc:
            result, error = empty, exc.message
        except Exception as exc:  # noqa: BLE001 - one failing collector never fails the sample
            result, error = empty, f"{type(exc).__name__}: {exc}"
        metrics.COLLECTOR_SECONDS.labels(collector=name).set(time.perf_counter() - start)
        metrics.COLLECTOR_SUCCESS.labels(collector=name).set(0 if error else 1)
        if error != self._last_errors.get(name, ""):
            if error:
                log.warning("collector failed", extra={"collector": name, "error": error})
            else:
                log.info("collector recovered", extra={"collector": name})
            self._last_errors[name] = error
        return result, error

    def sample(self) -> NodeSample:
        now = time.time()
        gpu = GpuSnapshot(gpus=(), processes=())
        errors: list[str] = []
        if self._nvml is not None and self._nvml.available:
            gpu, error = self._timed("nvml", self._nvml.collect, gpu)
            errors += [error] if error else []
            errors += list(gpu.errors)
        gpu_pids = [p.pid for p in gpu.processes]
        procs, error = self._timed(
            "processes", lambda: self._processes.collect(gpu_pids), ProcessSnapshot(processes={})
        )
        errors += [error] if error else []
        visible = procs.processes.keys()
        if self._prefixes:
            procs = ProcessSnapshot(
                processes={
                    pid: p
                    for pid, p in procs.processes.items()
                    if (p.cgroup.rstrip("/") + "/").startswith(self._prefixes)
                }
            )
        util = {g.uuid: g.utilization_pct for g in gpu.gpus if g.utilization_pct is not None}
        no_workloads: list[Workload] = []
        listed = plausible(gpu.processes)
        workloads, error = self._timed(
            "discovery", lambda: self._discovery.discover(procs, listed, util), no_workloads
        )
        errors += [error] if error else []
        workloads = [
            *workloads,
            *unattributed_workloads(
                self._discovery.node_id,
                gpu.gpus,
                gpu.processes,
                workloads,
                visible=visible,
                in_scope=procs.processes.keys(),
                exiting=self._recent.exiting(workloads, visible, now),
            ),
        ]
        if self._pods is not None and workloads:
            workloads, error = self._with_pods(self._pods, workloads, gpu.gpus)
            errors += [error] if error else []
        tracker = self._serving
        if tracker is not None and workloads:
            found = list(workloads)
            workloads, error = self._timed(
                "serving", lambda: _with_serving(tracker, found, now), found
            )
            errors += [error] if error else []
        network = self._network
        if network is not None and workloads:
            found = list(workloads)
            workloads, error = self._timed("network", lambda: network.annotate(found, now), found)
            errors += [error] if error else []
        self._publish_gpu_metrics(gpu.gpus)
        dcgm_series.SERIES.publish(gpu)
        metrics.WORKLOADS.set(len(workloads))
        return NodeSample(now, gpu.gpus, tuple(workloads), tuple(errors))

    def _with_pods(
        self, pods: PodAttribution, workloads: list[Workload], gpus: Sequence[GpuSample]
    ) -> tuple[list[Workload], str]:
        """Pod labels; a failing kubelet is a failing collector, the sample goes on."""
        _, error = self._timed("kubelet", lambda: pods.refresh(workloads), None)
        return pods.label(workloads, {str(g.index): g.uuid for g in gpus}), error

    @staticmethod
    def _publish_gpu_metrics(gpus: tuple[GpuSample, ...]) -> None:
        for g in gpus:
            labels = {"gpu": str(g.index), "uuid": g.uuid}
            if g.utilization_pct is not None:
                metrics.GPU_UTILIZATION.labels(**labels).set(g.utilization_pct)
            if g.memory_used_bytes is not None:
                metrics.GPU_MEMORY_USED.labels(**labels).set(g.memory_used_bytes)
            if g.power_mw is not None:
                metrics.GPU_POWER.labels(**labels).set(g.power_mw / 1000)
            if g.power_limit_mw is not None:
                metrics.GPU_POWER_LIMIT.labels(**labels).set(g.power_limit_mw / 1000)
            if g.temperature_c is not None:
                metrics.GPU_TEMPERATURE.labels(**labels).set(g.temperature_c)


def _with_serving(
    tracker: ServingTracker, workloads: Sequence[Workload], now: float
) -> list[Workload]:
    """Each workload with what its own model server says, within ``SERVING_BUDGET_S``."""
    tracker.retain(w.workload_id for w in workloads)
    deadline = time.monotonic() + SERVING_BUDGET_S
    out = []
    for w in workloads:
        ports = w.fingerprint.listening_ports
        if not ports:
            out.append(w)
            continue
        if time.monotonic() < deadline:
            stats = tracker.stats(w.workload_id, w.root_pid, ports, now)
        else:
            stats = tracker.last(w.workload_id)
        out.append(dataclasses.replace(w, serving=stats) if stats is not None else w)
    return out
