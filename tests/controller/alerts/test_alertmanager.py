"""The Alertmanager sink against a real Alertmanager: a raised alert is listed by
``GET /api/v2/alerts`` with our labels; a resolved one is sent with ``endsAt`` and leaves the
active list."""

from __future__ import annotations

import time
from pathlib import Path

from backstop.controller.alerts.alertmanager import AlertmanagerSink
from backstop.controller.alerts.desk import AlertDesk
from backstop.controller.alerts.dispatcher import AlertDispatcher
from backstop.controller.store import open_store
from backstop.core.times import rfc3339
from tests.controller.alerts.conftest import alert_spec
from tests.support.alert_receivers import Alertmanager
from tests.support.workloads import wait_until

SPEC = alert_spec(
    "wl-b",
    dedup_key="kv-cache/wl-b",
    policy="kv-cache-thrash",
    severity="warning",
    summary="KV cache evictions above 100/s",
    node_id="gpu-node-7",
)


def test_alerts_reach_alertmanager_and_resolve(alertmanager: Alertmanager, tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'b.db'}")
    sink = AlertmanagerSink(alertmanager.url, external_url="https://backstop.example:8443/")
    dispatcher = AlertDispatcher(store, [sink])
    desk = AlertDesk(dispatcher)
    alert = desk.raise_alert(SPEC)
    assert dispatcher.drain() == 1
    assert store.alert_backlog() == (1, 0)
    assert wait_until(lambda: len(alertmanager.alerts()) == 1, timeout_s=10)
    (listed,) = alertmanager.alerts()
    assert listed["labels"] == {
        "alertname": "kv-cache-thrash",
        "severity": "warning",
        "policy": "kv-cache-thrash",
        "node": "gpu-node-7",
        "workload_id": "wl-b",
    }
    assert listed["annotations"]["summary"] == "KV cache evictions above 100/s"
    assert listed["annotations"]["alert_id"] == alert.alert_id
    assert listed["generatorURL"] == f"https://backstop.example:8443/alerts/{alert.alert_id}"
    assert listed["status"]["state"] == "active"
    assert listed["startsAt"].startswith(rfc3339(alert.raised_s)[:19])

    acked = desk.ack(alert.alert_id, "alice")
    assert dispatcher.drain() == 1
    assert wait_until(
        lambda: (
            [a["annotations"].get("acknowledged_by") for a in alertmanager.alerts()] == ["alice"]
        ),
        timeout_s=10,
    )
    assert acked.resolved_s is None

    time.sleep(0.01)
    resolved = desk.resolve(alert.alert_id)
    assert resolved.resolved_s is not None
    body = sink.alert_json(resolved)
    assert body["endsAt"] == rfc3339(resolved.resolved_s, milliseconds=True)
    assert dispatcher.drain() == 1
    assert wait_until(lambda: alertmanager.alerts() == [], timeout_s=10)
    assert store.alert_backlog() == (0, 0)
    store.close()


def test_open_alerts_are_sent_again_each_resend_interval(
    alertmanager: Alertmanager, tmp_path: Path
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'b.db'}")
    sink = AlertmanagerSink(alertmanager.url, resend_s=0.2)
    dispatcher = AlertDispatcher(store, [sink])
    store.raise_alert(SPEC, time.time())  # queued for no sink: only the resend sends it
    assert dispatcher.resend_open() == 1
    assert dispatcher.resend_open() == 0  # not yet due again
    assert wait_until(lambda: len(alertmanager.alerts()) == 1, timeout_s=10)
    time.sleep(0.25)
    assert dispatcher.resend_open() == 1
    store.close()
