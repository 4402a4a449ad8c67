"""Alerts and their delivery queue, run against every backend (``store`` is parametrized)."""

from __future__ import annotations

import pytest

from backstop.controller.store import Store, open_store
from backstop.controller.store.migrations import MIGRATIONS
from backstop.core.alerts import AlertSpec, AlertState
from backstop.core.errors import Conflict, NotFound

SINKS = ("webhook", "alertmanager")


def _spec(workload: str = "wl-a", summary: str = "GPU memory above 90%") -> AlertSpec:
    return AlertSpec(
        dedup_key=f"gpu-memory/{workload}",
        policy="gpu-memory",
        policy_version=3,
        severity="warning",
        summary=summary,
        node_id="n1",
        workload_id=workload,
        details={"memory_pct": 93.5, "gpus": [0, 1]},
    )


def test_a_raise_fires_once_and_enqueues_one_delivery_per_sink(store: Store) -> None:
    first = store.raise_alert(_spec(), 10.0, SINKS)
    assert first.state is AlertState.FIRING
    assert first.alert_id.startswith("alr-")
    assert (first.raised_s, first.last_seen_s) == (10.0, 10.0)
    assert first.details == {"memory_pct": 93.5, "gpus": [0, 1]}
    again = store.raise_alert(_spec(summary="GPU memory at 95%"), 20.0, SINKS)
    assert again.alert_id == first.alert_id
    assert (again.raised_s, again.last_seen_s, again.summary) == (10.0, 20.0, "GPU memory at 95%")
    assert store.alert_backlog() == (1, 2)
    due = store.due_deliveries(30.0)
    assert sorted(d.sink for d in due) == sorted(SINKS)
    assert {d.alert.state for d in due} == {AlertState.FIRING}
    assert all(d.alert.alert_id == first.alert_id and d.attempts == 0 for d in due)
    assert store.get_alert(first.alert_id) == again
    assert store.get_alert("alr-nope") is None


def test_ack_and_resolve_are_changes_and_a_resolved_alert_fires_again(store: Store) -> None:
    alert = store.raise_alert(_spec(), 10.0, ["webhook"])
    acked = store.ack_alert(alert.alert_id, "alice", 11.0, ["webhook"])
    assert (acked.state, acked.acked_by, acked.acked_s) == (AlertState.ACKNOWLEDGED, "alice", 11.0)
    with pytest.raises(Conflict):
        store.ack_alert(alert.alert_id, "bob", 12.0, ["webhook"])
    with pytest.raises(NotFound):
        store.ack_alert("alr-nope", "bob", 12.0)
    with pytest.raises(NotFound):
        store.resolve_alert("alr-nope", 12.0)
    assert store.raise_alert(_spec(), 12.0, ["webhook"]).state is AlertState.ACKNOWLEDGED
    resolved = store.resolve_alert(alert.alert_id, 13.0, ["webhook"])
    assert (resolved.state, resolved.resolved_s) == (AlertState.RESOLVED, 13.0)
    with pytest.raises(Conflict):
        store.resolve_alert(alert.alert_id, 14.0)
    refired = store.raise_alert(_spec(), 15.0, ["webhook"])
    assert (refired.alert_id, refired.state) == (alert.alert_id, AlertState.FIRING)
    assert (refired.raised_s, refired.acked_by, refired.acked_s, refired.resolved_s) == (
        15.0,
        "",
        None,
        None,
    )
    changes = []
    for _ in range(5):  # one change at a time per alert and sink, in order
        due = store.due_deliveries(100.0)
        assert len(due) <= 1
        if not due:
            break
        changes.append(due[0].alert.state)
        store.mark_delivered(due[0].delivery_id, 100.0)
    assert changes == [
        AlertState.FIRING,
        AlertState.ACKNOWLEDGED,
        AlertState.RESOLVED,
        AlertState.FIRING,
    ]
    assert store.alert_backlog() == (1, 0)


def test_listing_filters_by_state_newest_first(store: Store) -> None:
    a = store.raise_alert(_spec("wl-a"), 10.0)
    b = store.raise_alert(_spec("wl-b"), 11.0)
    c = store.raise_alert(_spec("wl-c"), 12.0)
    store.resolve_alert(b.alert_id, 13.0)
    store.ack_alert(c.alert_id, "alice", 14.0)
    assert [x.alert_id for x in store.list_alerts()] == [c.alert_id, b.alert_id, a.alert_id]
    open_states = [AlertState.FIRING, AlertState.ACKNOWLEDGED]
    assert [x.alert_id for x in store.list_alerts(open_states)] == [c.alert_id, a.alert_id]
    assert [x.alert_id for x in store.list_alerts([AlertState.RESOLVED])] == [b.alert_id]
    assert len(store.list_alerts(limit=2)) == 2
    assert store.alert_backlog() == (1, 0)


def test_claims_failures_and_backoff(store: Store) -> None:
    alert = store.raise_alert(_spec(), 10.0, ["webhook"])
    (claimed,) = store.due_deliveries(10.0, claim_s=60.0)
    assert store.due_deliveries(20.0) == []  # claimed: not handed out twice
    store.mark_failed(claimed.delivery_id, 25.0, "connection refused")
    assert store.due_deliveries(24.0) == []
    (retry,) = store.due_deliveries(25.0)
    assert (retry.delivery_id, retry.attempts) == (claimed.delivery_id, 1)
    assert retry.alert.alert_id == alert.alert_id
    store.mark_delivered(retry.delivery_id, 26.0)
    store.mark_failed(retry.delivery_id, 30.0, "late")  # a delivered one stays delivered
    assert store.due_deliveries(1000.0) == []
    assert store.prune_alert_deliveries(27.0) == 1
    assert store.alert_backlog() == (1, 0)


def test_the_queue_survives_a_reopen(store_url: str) -> None:
    first = open_store(store_url)
    try:
        alert = first.raise_alert(_spec(), 10.0, SINKS)
        (claimed, _) = first.due_deliveries(10.0)
        first.mark_failed(claimed.delivery_id, 11.0, "HTTP 500")
    finally:
        first.close()
    second = open_store(store_url)
    try:
        assert second.schema_version() == len(MIGRATIONS)
        assert second.get_alert(alert.alert_id) == alert
        due = second.due_deliveries(100.0)
        assert sorted(d.sink for d in due) == sorted(SINKS)
        assert max(d.attempts for d in due) == 1
    finally:
        second.close()


def test_two_stores_on_one_database_share_alerts_and_claims(store_url: str) -> None:
    a, b = open_store(store_url), open_store(store_url)
    try:
        first = a.raise_alert(_spec(), 10.0, ["webhook"])
        assert b.raise_alert(_spec(), 11.0, ["webhook"]).alert_id == first.alert_id
        (claimed,) = a.due_deliveries(12.0)
        assert b.due_deliveries(12.0) == []  # the other replica's claim holds
        assert [d.delivery_id for d in b.due_deliveries(12.0 + 60.0)] == [claimed.delivery_id]
    finally:
        a.close()
        b.close()
