"""Replica events: what goes on the wire between replicas, and what is refused."""

from __future__ import annotations

from backstop.controller.fanout import LocalFanout, parse


def test_events_parse_and_anything_else_is_ignored() -> None:
    assert parse("host:12 dispatch cor-0123abcd") == ("host:12", "dispatch", "cor-0123abcd")
    assert parse("host:12 settle cor-0123abcd") == ("host:12", "settle", "cor-0123abcd")
    for bad in ("", "host:12 dispatch", "host:12 delete cor-1", "a b c d", "x  settle"):
        assert parse(bad) is None


def test_a_lone_replica_has_nobody_to_tell() -> None:
    fanout = LocalFanout()
    assert not fanout.shared
    fanout.publish("dispatch", "cor-1")  # nothing happens, nothing raises
