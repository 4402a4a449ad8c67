"""Per-workload Prometheus series: what each workload is, its holds and its GPU memory.

Owns the values of ``backstop_workload_info``, ``backstop_workload_holds`` and
``backstop_workload_gpu_memory_bytes`` (declared in :mod:`backstop.agent.metrics`). Each
report's workloads replace the previous ones: a series whose labels no longer describe a
workload (it went away, changed state or left a GPU) is removed, so none goes stale.
"""

from __future__ import annotations

from collections.abc import Iterable

from backstop.agent import metrics
from backstop.core.models import Workload
from backstop.telemetry.series import Gauge

Labels = tuple[str, ...]


class WorkloadSeries:
    """Publishes workloads into the per-workload gauges, removing series that went away."""

    def __init__(self) -> None:
        self._shown: dict[Gauge, set[Labels]] = {}

    def publish(self, workloads: Iterable[Workload]) -> None:
        """Show exactly these workloads (as annotated with their state and holds)."""
        info: dict[Labels, float] = {}
        holds: dict[Labels, float] = {}
        memory: dict[Labels, float] = {}
        for w in workloads:
            fp = w.fingerprint
            model_id = fp.model.model_id if fp.model is not None else ""
            state = "unattributed" if w.unattributed else w.state
            identity = (model_id, fp.framework, fp.behaviour.value, state)
            info[(w.workload_id, w.node_id, *identity)] = 1
            holds[(w.workload_id, w.node_id)] = len(w.holds)
            for use in fp.gpus:
                key = (w.workload_id, w.node_id, use.gpu_uuid)
                memory[key] = memory.get(key, 0) + use.used_memory_bytes
        self._show(metrics.WORKLOAD_INFO, info)
        self._show(metrics.WORKLOAD_HOLDS, holds)
        self._show(metrics.WORKLOAD_GPU_MEMORY, memory)

    def _show(self, gauge: Gauge, values: dict[Labels, float]) -> None:
        for gone in self._shown.get(gauge, set()) - values.keys():
            gauge.remove(*gone)
        for labels, value in values.items():
            gauge.labels(*labels).set(value)
        self._shown[gauge] = set(values)


SERIES = WorkloadSeries()
"""The agent's per-workload series, published with each report."""
