"""Conversions between what the agent keeps (``agent.state``) and what it sends and acts on."""

from __future__ import annotations

from collections.abc import Sequence

from backstop.agent.state import AppliedCorrection, AppliedWorkload
from backstop.core.models import (
    CommandAck,
    Fingerprint,
    TargetState,
    Workload,
    WorkloadOutcome,
)


def stored_ack(prior: AppliedCorrection, sequence: int) -> CommandAck:
    """The acknowledgement kept for a handled correction, under ``sequence``."""
    return CommandAck(
        prior.correction_id,
        sequence,
        TargetState(prior.ack_state),
        prior.ack_message,
        tuple(
            WorkloadOutcome(o["workload_id"], tuple(o["pids"]), o["outcome"], o.get("detail", ""))
            for o in prior.ack_outcomes
        ),
    )


def outcomes_record(outcomes: Sequence[WorkloadOutcome]) -> list[dict[str, object]]:
    return [
        {
            "workload_id": o.workload_id,
            "pids": list(o.pids),
            "outcome": o.outcome,
            "detail": o.detail,
        }
        for o in outcomes
    ]


def stub_workload(node_id: str, applied: AppliedWorkload) -> Workload:
    """A workload as recorded when it was changed, to undo exactly that change."""
    return Workload(
        workload_id=applied.workload_id,
        node_id=node_id,
        root_pid=applied.root_pid,
        pids=tuple(applied.pids),
        fingerprint=Fingerprint(cgroup=applied.cgroup),
        started_at_s=applied.started_at_s,
    )
