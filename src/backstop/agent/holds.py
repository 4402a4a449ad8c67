"""Holds: every effect a correction has on a workload, keyed by that correction.

A workload stays paused while any pause in force holds it (an operator's, or the lease's),
throttled while any throttle holds it, fenced while any shutdown holds it. Undoing one
correction releases only its own hold: a resume of one of two pauses leaves the workload
frozen. Reports carry each workload's holds, oldest first, and a state that follows them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from backstop.agent.state import AgentState
from backstop.core.models import Action, Hold, Workload

HOLDING_ACTIONS = frozenset({Action.PAUSE.value, Action.THROTTLE.value, Action.SHUTDOWN.value})
_STATE = {Action.PAUSE.value: "paused", Action.THROTTLE.value: "throttled"}


def holds_by_workload(state: AgentState, now_s: float) -> dict[str, list[Hold]]:
    """Per workload id: the holds in force on it, oldest first."""
    found: dict[str, list[Hold]] = {}
    for c in state.holding(now_s):
        if c.action not in HOLDING_ACTIONS:
            continue
        for workload_id in sorted(c.workload_ids):
            found.setdefault(workload_id, []).append(Hold(c.correction_id, c.action))
    return found


def other_holders(
    state: AgentState, now_s: float, workload_id: str, action: str, besides: str
) -> list[str]:
    """The corrections other than ``besides`` whose ``action`` still holds the workload."""
    return [
        c.correction_id
        for c in state.holding(now_s)
        if c.action == action and c.correction_id != besides and workload_id in c.workload_ids
    ]


def annotate(workloads: Sequence[Workload], state: AgentState, now_s: float) -> list[Workload]:
    """Each workload with its holds, and the state they make (paused over throttled)."""
    holds = holds_by_workload(state, now_s)
    annotated = []
    for w in workloads:
        mine = tuple(holds.get(w.workload_id, ()))
        if not mine:
            annotated.append(w)
            continue
        actions = {h.action for h in mine}
        label = next((_STATE[a] for a in _STATE if a in actions), w.state)
        annotated.append(replace(w, holds=mine, state=label))
    return annotated
