"""Throttle and its undo: GPU power caps (NVML) and CPU quotas (``cpu.max``) per workload.

Overlapping throttles are holds on the same GPUs: a GPU's original limit is recorded once
(``AgentState.original_power_mw``) and restored only when no other throttle in force still
caps it.

CPU quotas are holds too. Each throttle records the ``cpu.max`` it found; a resume writes it
back only when no other throttle in force still caps that workload. When the oldest hold goes
first, the value it found (the workload's own) passes to the oldest hold left, so the last
resume restores the workload's own quota, never an intermediate cap. While several hold, the
strictest cap written stays (``throttle_cpu`` never loosens).
"""

from __future__ import annotations

from collections.abc import Callable

from backstop.agent.actuators.gpu_power import restore_gpus, throttle_gpus
from backstop.agent.actuators.workload_actuator import ActuationResult, ProcessActuator
from backstop.agent.collectors.nvml import NvmlBackend
from backstop.agent.records import stub_workload
from backstop.agent.state import AgentState, AppliedCorrection, AppliedWorkload
from backstop.core.errors import BackstopError
from backstop.core.models import Action, ActionParams, CorrectionSpec, Workload, WorkloadOutcome


class Throttler:
    def __init__(
        self,
        node_id: str,
        state: AgentState,
        actuator: ProcessActuator,
        gpu: NvmlBackend | None,
        clock: Callable[[], float],
    ) -> None:
        self._node_id = node_id
        self._state = state
        self._actuator = actuator
        self._gpu = gpu
        self._clock = clock

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def state(self) -> AgentState:
        return self._state

    @property
    def actuator(self) -> ProcessActuator:
        """The actuator whose cgroups it throttles; pause and terminate go through it too."""
        return self._actuator

    def throttle(
        self, spec: CorrectionSpec, workloads: list[Workload]
    ) -> tuple[list[ActuationResult], dict[str, int]]:
        fraction = spec.params.power_fraction or ActionParams.DEFAULT_POWER_FRACTION
        uuids = sorted({g.gpu_uuid for w in workloads for g in w.fingerprint.gpus})
        previous: dict[str, int] = {}
        gpu_error = ""
        if uuids and self._gpu is not None and self._gpu.available:
            record = self._state.original_power_mw
            try:
                throttle_gpus(self._gpu, uuids, fraction, record=record)
            except BackstopError as exc:
                gpu_error = exc.message
            finally:
                self._state.save()
            previous = {u: record[u] for u in uuids if u in record}
        elif uuids:
            gpu_error = "NVML is not available on this node"
        results = []
        for w in workloads:
            mine = [g.gpu_uuid for g in w.fingerprint.gpus]
            parts, ok = [], True
            if mine:
                if gpu_error:
                    parts.append(f"GPU power cap failed: {gpu_error}")
                    ok = False
                else:
                    parts.append(
                        f"GPU power capped at {fraction:.0%} of default on {len(mine)} GPU(s)"
                    )
            previous_cpu = ""
            if spec.params.cpu_fraction is not None:
                r = self._actuator.throttle_cpu(w, spec.params.cpu_fraction)
                parts.append(r.to_workload_outcome().detail)
                ok = ok and r.outcome == "applied"
                previous_cpu = r.previous
            if not mine and spec.params.cpu_fraction is None:
                results.append(
                    ActuationResult(
                        "skipped",
                        "none",
                        w.pids,
                        "uses no GPU; nothing to cap",
                        workload_id=w.workload_id,
                    )
                )
                continue
            mechanism = "+".join(
                m for m, used in (("nvml.power_limit", mine), ("cpu.max", previous_cpu)) if used
            )
            results.append(
                ActuationResult(
                    "applied" if ok else "failed",
                    mechanism or "none",
                    w.pids,
                    "; ".join(parts),
                    previous=previous_cpu,
                    workload_id=w.workload_id,
                )
            )
        return results, previous

    def unthrottle(self, target: AppliedCorrection) -> list[WorkloadOutcome]:
        """Restore the GPUs this throttle capped, unless another throttle still caps them."""
        detail = ""
        outcome = "applied"
        still_capped = {
            uuid
            for c in self._state.active(self._clock())
            if c.action == Action.THROTTLE.value and c.correction_id != target.correction_id
            for uuid in c.previous_power_mw
        }
        record = self._state.original_power_mw
        restore = {
            u: record[u] for u in target.previous_power_mw if u in record and u not in still_capped
        }
        if restore and self._gpu is not None:
            try:
                restore_gpus(self._gpu, restore)
                for uuid in restore:
                    del record[uuid]
                self._state.save()
                detail = f"GPU power limit restored on {len(restore)} GPU(s)"
            except BackstopError as exc:
                outcome, detail = "failed", f"GPU power restore failed: {exc.message}"
        elif still_capped & set(target.previous_power_mw):
            detail = "GPU power stays capped by another throttle in force"
        outcomes = []
        for w in target.workloads:
            if w.previous_cpu_max and (kept := self._cpu_still_held(target, w)):
                outcomes.append(
                    WorkloadOutcome(
                        w.workload_id,
                        tuple(w.pids),
                        "applied",
                        f"{detail}; cpu.max stays capped by {kept} in force".lstrip("; "),
                    )
                )
            elif w.previous_cpu_max:
                r = self._actuator.restore_cpu(stub_workload(self._node_id, w), w.previous_cpu_max)
                outcomes.append(
                    WorkloadOutcome(
                        w.workload_id, tuple(w.pids), r.outcome, f"{detail}; {r.detail}"
                    )
                )
            else:
                outcomes.append(WorkloadOutcome(w.workload_id, tuple(w.pids), outcome, detail))
        return outcomes

    def _cpu_still_held(self, target: AppliedCorrection, workload: AppliedWorkload) -> str:
        """The oldest other throttle in force capping ``workload``'s CPU ('' if none).

        When ``target`` is older than every such hold, its recorded quota (the workload's own)
        passes to the oldest of them, for the last resume to restore.
        """
        holders = [
            (c, held)
            for c in self._state.active(self._clock())
            if c.action == Action.THROTTLE.value and c.correction_id != target.correction_id
            for held in c.workloads
            if held.workload_id == workload.workload_id and held.previous_cpu_max
        ]
        if not holders:
            return ""
        oldest, held = min(holders, key=lambda pair: pair[0].handled_at_s)
        if target.handled_at_s <= oldest.handled_at_s:
            held.previous_cpu_max = workload.previous_cpu_max
            self._state.save()
        return oldest.correction_id
