"""What an actuator reports for one action on one workload: outcome, mechanism, leftovers.

Purely data; the agent turns an :class:`ActuationResult` into the
:class:`~backstop.core.models.WorkloadOutcome` it acknowledges to the controller.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from backstop.core.models import WorkloadOutcome


class Outcome(enum.StrEnum):
    """How an action ended for one workload (``WorkloadOutcome.outcome``)."""

    APPLIED = "applied"
    """The workload is in the asked-for state (now, or already was)."""
    FAILED = "failed"
    """The action was tried, or refused, and the workload is not in the asked-for state."""
    SKIPPED = "skipped"
    """Nothing was done: the workload is gone or the mechanism is not available here."""


class Mechanism(enum.StrEnum):
    """The kernel interface an action used."""

    NONE = "none"
    CGROUP_FREEZE = "cgroup.freeze"
    SIGSTOP = "SIGSTOP"
    SIGCONT = "SIGCONT"
    SIGTERM_SIGKILL = "SIGTERM+SIGKILL"
    CGROUP_KILL = "cgroup.kill"
    CPU_MAX = "cpu.max"


@dataclass(frozen=True, slots=True)
class ActuationResult:
    """What one action did to one workload."""

    outcome: str
    """One of :class:`Outcome`: applied, failed or skipped."""
    mechanism: str
    """One :class:`Mechanism`, or several joined with ``+``."""
    pids: tuple[int, ...]
    detail: str
    leaves_behind: str = ""
    """What the action leaves in place (memory held, pending signals, a value to restore)."""
    previous: str = ""
    """throttle_cpu: the ``cpu.max`` line before the change, to hand to ``restore_cpu``."""
    workload_id: str = ""
    action: str = ""

    def to_workload_outcome(self) -> WorkloadOutcome:
        """The outcome as acknowledged to the controller."""
        detail = f"{self.mechanism}: {self.detail}"
        if self.leaves_behind:
            detail += f"; leaves behind: {self.leaves_behind}"
        return WorkloadOutcome(self.workload_id, self.pids, str(self.outcome), detail)


@dataclass(frozen=True, slots=True)
class Reply:
    """Builds the results of one action on one workload."""

    action: str
    workload_id: str

    def _make(
        self, outcome: Outcome, mechanism: str, pids: tuple[int, ...], detail: str, **rest: str
    ) -> ActuationResult:
        """A result of this reply's action and workload (``rest``: what it leaves behind, and
        the value it replaced)."""
        return ActuationResult(
            outcome=outcome,
            mechanism=str(mechanism),
            pids=pids,
            detail=detail,
            workload_id=self.workload_id,
            action=self.action,
            **rest,
        )

    def applied(
        self,
        mechanism: str,
        pids: tuple[int, ...],
        detail: str,
        *,
        leaves_behind: str = "",
        previous: str = "",
    ) -> ActuationResult:
        """The workload is in the asked-for state."""
        return self._make(
            Outcome.APPLIED, mechanism, pids, detail, leaves_behind=leaves_behind, previous=previous
        )

    def failed(
        self, mechanism: str, pids: tuple[int, ...], detail: str, *, leaves_behind: str = ""
    ) -> ActuationResult:
        """The action did not reach the asked-for state."""
        return self._make(Outcome.FAILED, mechanism, pids, detail, leaves_behind=leaves_behind)

    def skipped(self, detail: str) -> ActuationResult:
        """Nothing was done."""
        return self._make(Outcome.SKIPPED, Mechanism.NONE, (), detail)
