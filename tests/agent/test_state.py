"""The agent's durable state: sequences survive restarts, changes are atomic."""

from __future__ import annotations

from pathlib import Path

import pytest

from backstop.agent.state import (
    REPORT_SEQUENCE_BLOCK,
    STATE_FILE,
    AgentState,
    AppliedCorrection,
    AppliedWorkload,
)
from backstop.core.errors import StoreError


def _applied(
    cid: str, seq: int, *, state: str = "applied", expires: float = 100.0
) -> AppliedCorrection:
    return AppliedCorrection(
        correction_id=cid,
        action="pause",
        sequence=seq,
        spec="00",
        expires_at_s=expires,
        ack_state=state,
        ack_message="ok",
        workloads=[AppliedWorkload("wl-1", 10, [10, 11], "SIGSTOP", started_at_s=5.0)],
    )


def test_report_sequence_never_repeats_across_restarts(tmp_path: Path) -> None:
    first = AgentState(tmp_path)
    seen = [first.next_report_sequence() for _ in range(5)]
    assert seen == [1, 2, 3, 4, 5]
    second = AgentState(tmp_path)  # a crash: nothing was saved after the reservation
    assert second.next_report_sequence() > seen[-1]
    assert second.next_report_sequence() <= seen[-1] + REPORT_SEQUENCE_BLOCK + 2


def test_applied_corrections_and_original_power_survive_restart(tmp_path: Path) -> None:
    state = AgentState(tmp_path)
    state.record(_applied("cor-1", 3))
    state.record(_applied("cor-2", 4, expires=10.0))
    state.record(_applied("cor-3", 5, state="failed"))
    state.original_power_mw["GPU-1"] = 700_000
    state.save()
    state.mark_reverted("cor-1")
    again = AgentState(tmp_path)
    assert again.last_command_sequence == 5
    assert again.corrections["cor-1"].reverted
    assert again.corrections["cor-2"].workloads[0].pids == [10, 11]
    assert again.original_power_mw == {"GPU-1": 700_000}
    active = [c.correction_id for c in again.active(now_s=50.0)]
    assert active == []  # cor-1 reverted, cor-2 expired, cor-3 failed
    assert [c.correction_id for c in again.active(now_s=5.0)] == ["cor-2"]
    assert not list(tmp_path.glob("*.tmp"))


def test_unreadable_state_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text("{not json")
    with pytest.raises(StoreError, match="move it aside"):
        AgentState(tmp_path)
