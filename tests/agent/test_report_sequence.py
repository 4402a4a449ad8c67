"""The agent adopts a stored report sequence above its own, so it is never stalled."""

from __future__ import annotations

from pathlib import Path

from backstop.agent.state import AgentState


def test_a_higher_stored_sequence_is_adopted_and_survives_a_restart(tmp_path: Path) -> None:
    state = AgentState(tmp_path)
    assert [state.next_report_sequence() for _ in range(3)] == [1, 2, 3]
    assert state.adopt_report_sequence(3) is None  # what it sent itself: nothing to adopt
    assert state.adopt_report_sequence(500_000) == 3  # another sender got there first
    assert state.next_report_sequence() == 500_001
    restarted = AgentState(tmp_path)
    assert restarted.next_report_sequence() > 500_001
    assert restarted.adopt_report_sequence(10) is None
