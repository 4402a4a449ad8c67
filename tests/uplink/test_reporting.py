"""Agents that keep no state (the operator's cluster agent, the cloud agent) number reports by
the clock in milliseconds; a higher sequence the controller has stored (another sender used
the node's identity and jumped ahead) is adopted, so their reports are not dropped as old."""

from __future__ import annotations

import time
from pathlib import Path

from backstop.core.models import CommandAck, NodeInfo, TargetState
from backstop.uplink.reporting import ReportSequence, stateless_session


def test_a_clock_sequence_adopts_a_stored_one_ahead_of_it() -> None:
    sequence = ReportSequence()
    first = sequence.next()
    assert sequence.adopt(first - 5) is None  # behind: nothing to adopt
    assert sequence.adopt(first) is None  # equal: the next one is above it anyway
    ahead = first + 900_000  # a quarter of an hour ahead of the clock
    assert sequence.adopt(ahead) == first
    assert sequence.next() == ahead + 1


def test_the_stateless_session_adopts_the_controllers_stored_sequence(tmp_path: Path) -> None:
    async def on_command(command: object) -> CommandAck:
        return CommandAck("cor-00000000", 0, TargetState.REFUSED)

    sequence = ReportSequence()
    session = stateless_session(
        "127.0.0.1:1", lambda: NodeInfo("k8s-x"), on_command,
        insecure=True, tls=tmp_path, state_dir=tmp_path / "state", reconnect_max_s=1.0,
        sequence=sequence,
    )  # fmt: skip
    stored = time.time_ns() // 1_000_000 + 10**6
    session._adopt_stored_sequence(stored)  # as on a Welcome with last_report_sequence
    assert sequence.next() == stored + 1
