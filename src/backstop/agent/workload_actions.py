"""What the agent does to the workloads in a correction's scope, and how it undoes it.

Owns acting on process trees for the enforcing actions (throttle, pause, terminate, shutdown:
all trees of a terminate at once, under one shared grace period), the record of what each
action changed (:class:`~backstop.agent.state.AppliedWorkload`, for undo and re-application)
and the undo of a pause or a throttle, which releases only the holds of the correction it
reverts. Queueing, verification and journaling stay with :mod:`backstop.agent.enforcer`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from backstop.agent import holds
from backstop.agent.records import stub_workload
from backstop.agent.state import AppliedCorrection, AppliedWorkload
from backstop.agent.throttle import Throttler
from backstop.core.models import Action, CorrectionSpec, Workload, WorkloadOutcome

Effect = tuple[list[WorkloadOutcome], list[AppliedWorkload], dict[str, int], str]
"""Per-workload outcomes, what was applied, the GPUs' previous power limits (mW), a summary."""


class WorkloadActions:
    """Applies and undoes a correction's effect on process trees (blocking calls in threads)."""

    def __init__(self, throttler: Throttler, *, default_grace_s: float) -> None:
        self._throttler = throttler
        self._node_id = throttler.node_id
        self._state = throttler.state
        self._actuator = throttler.actuator
        self._default_grace_s = default_grace_s

    async def act(self, spec: CorrectionSpec, workloads: list[Workload]) -> Effect:
        """Throttle, pause or terminate the workloads (any action but observe and resume)."""
        if not workloads:
            return [], [], {}, "nothing in scope on this node yet; the correction stays in force"
        previous_power: dict[str, int] = {}
        if spec.action is Action.THROTTLE:
            results, previous_power = await asyncio.to_thread(
                self._throttler.throttle, spec, workloads
            )
        elif spec.action is Action.PAUSE:
            results = await asyncio.to_thread(lambda: [self._actuator.pause(w) for w in workloads])
        else:  # TERMINATE, SHUTDOWN: all trees at once, one shared grace period
            grace = (
                spec.params.grace_s if spec.params.grace_s is not None else self._default_grace_s
            )
            results = list(
                await asyncio.gather(
                    *(asyncio.to_thread(self._actuator.terminate, w, grace) for w in workloads)
                )
            )
        outcomes = [
            workload_outcome(w, r.outcome, r.to_workload_outcome().detail, r.pids)
            for w, r in zip(workloads, results, strict=True)
        ]
        applied = [
            AppliedWorkload(
                w.workload_id,
                w.root_pid,
                list(r.pids or w.pids),
                r.mechanism,
                w.fingerprint.cgroup,
                previous_cpu_max=r.previous if "cpu.max" in r.mechanism.split("+") else "",
            )
            for w, r in zip(workloads, results, strict=True)
            if r.outcome == "applied"
        ]
        done = sum(1 for o in outcomes if o.outcome == "applied")
        return (
            outcomes,
            applied,
            previous_power,
            f"{spec.action.value}: {done}/{len(workloads)} workload(s)",
        )

    def unpause(self, target: AppliedCorrection, now: float) -> list[WorkloadOutcome]:
        """Thaw the workloads this pause holds, unless another pause in force holds them."""
        outcomes = []
        for w in target.workloads:
            others = holds.other_holders(
                self._state, now, w.workload_id, Action.PAUSE.value, target.correction_id
            )
            if others:
                detail = f"stays paused: also held by {', '.join(others)}"
                outcomes.append(WorkloadOutcome(w.workload_id, tuple(w.pids), "skipped", detail))
                continue
            r = self._actuator.resume(stub_workload(self._node_id, w))
            outcomes.append(WorkloadOutcome(w.workload_id, tuple(r.pids), r.outcome, r.detail))
        return outcomes

    def unthrottle(self, target: AppliedCorrection) -> list[WorkloadOutcome]:
        """Restore the GPUs this throttle capped, unless another throttle still caps them."""
        return self._throttler.unthrottle(target)


def workload_outcome(
    w: Workload, outcome: str, detail: str, pids: Sequence[int] = ()
) -> WorkloadOutcome:
    return WorkloadOutcome(w.workload_id, tuple(pids or w.pids), outcome, detail)
