"""Refusals are aggregated: one entry per actor, class and window, counts adding up."""

from __future__ import annotations

from typing import Any

from backstop.controller.refusals import RefusalLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Chain:
    """Collects what would be appended to the audit chain."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def __call__(self, actor: str, action: str, subject: str, **details: Any) -> None:
        self.entries.append({"actor": actor, "action": action, "subject": subject, **details})


def _log(**kwargs: Any) -> tuple[RefusalLog, Chain, Clock]:
    chain, clock = Chain(), Clock()
    return RefusalLog(chain, clock=clock, **kwargs), chain, clock


def test_first_refusal_is_written_at_once_and_the_rest_counted_until_the_window_ends() -> None:
    refusals, chain, clock = _log(window_s=60.0)
    for i in range(900):  # 300 attempts a second for three seconds
        clock.now = 1000.0 + i / 300
        refusals.refuse(
            "gpu-2", "agent.refused", "gpu-2", refusal="revoked", reason="revoked",
            peer=f"ipv4:127.0.0.1:{40000 + i}",
        )  # fmt: skip
    assert len(chain.entries) == 1
    first = chain.entries[0]
    assert (first["actor"], first["count"], first["peer"]) == ("gpu-2", 1, "ipv4:127.0.0.1:40000")
    clock.now = 1059.0
    refusals.flush_due()
    assert len(chain.entries) == 1  # the window is still open
    clock.now = 1060.0
    refusals.flush_due()
    assert len(chain.entries) == 2
    rest = chain.entries[1]
    assert rest["count"] == 899
    assert rest["refusal"] == "revoked"
    assert rest["first_s"] == 1000.0 + 1 / 300
    assert len(rest["peers"]) == 8  # a sample, not every address
    assert refusals.open_keys == 0
    # the next attempt opens a new window, written at once again
    refusals.refuse("gpu-2", "agent.refused", "gpu-2", refusal="revoked", reason="revoked")
    assert len(chain.entries) == 3
    assert sum(e["count"] for e in chain.entries) == 901


def test_keys_are_actor_action_and_class() -> None:
    refusals, chain, _ = _log()
    for _ in range(3):
        refusals.refuse("vic", "request.refused", "a", refusal="role", reason="r1")
        refusals.refuse("vic", "request.refused", "b", refusal="oversized", reason="r2")
        refusals.refuse("eve", "request.refused", "a", refusal="role", reason="r1")
    assert [(e["actor"], e["refusal"]) for e in chain.entries] == [
        ("vic", "role"),
        ("vic", "oversized"),
        ("eve", "role"),
    ]
    refusals.flush_all()
    assert len(chain.entries) == 6
    assert all(e["count"] == 2 for e in chain.entries[3:])


def test_settle_writes_an_actors_counts_before_their_next_entry() -> None:
    refusals, chain, _ = _log()
    for _ in range(4):
        refusals.refuse("vic", "request.refused", "x", refusal="role", reason="r")
        refusals.refuse("eve", "request.refused", "x", refusal="role", reason="r")
    refusals.settle("vic")
    assert [(e["actor"], e["count"]) for e in chain.entries] == [
        ("vic", 1),
        ("eve", 1),
        ("vic", 3),
    ]
    refusals.settle("vic")  # nothing counted since: nothing written
    assert len(chain.entries) == 3
    assert refusals.open_keys == 1


def test_memory_is_bounded_by_the_number_of_keys() -> None:
    refusals, chain, _ = _log(max_keys=16)
    for i in range(1000):
        for _ in range(2):
            refusals.refuse(f"node-{i}", "agent.refused", "-", refusal="identity", reason="r")
        assert refusals.open_keys <= 16
    refusals.flush_all()
    assert sum(e["count"] for e in chain.entries) == 2000
    assert refusals.open_keys == 0


def test_a_window_with_no_repeats_writes_nothing_more() -> None:
    refusals, chain, clock = _log()
    refusals.refuse("vic", "request.refused", "x", refusal="role", reason="r")
    clock.now += 120
    refusals.flush_due()
    refusals.flush_all()
    assert len(chain.entries) == 1
