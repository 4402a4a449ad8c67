"""The Alertmanager sink: alerts POSTed to Prometheus Alertmanager's v2 API.

Each delivery is ``POST {url}/api/v2/alerts`` with a one-element list: ``labels``
(``alertname`` = the policy, ``severity``, ``policy``, ``node``, ``workload_id``; empty ones
left out, as Alertmanager drops them anyway), ``annotations`` (``summary``, ``description``,
``alert_id``, and ``acknowledged_by`` once acknowledged), ``startsAt`` (when it started
firing), ``endsAt`` and, with an external URL, ``generatorURL``. Alertmanager takes an alert
not heard of again by its ``endsAt`` for resolved, so an open alert is sent with an ``endsAt``
of :data:`HOLD_FACTOR` resend intervals ahead and sent again every :attr:`resend_s` seconds
(as Prometheus does); a resolved one is sent with ``endsAt`` its resolve time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from backstop.controller.alerts.http_post import check_url, post_json
from backstop.core.alerts import Alert
from backstop.core.times import rfc3339

HOLD_FACTOR = 4
"""An open alert's ``endsAt`` is this many resend intervals after it is sent."""


class AlertmanagerSink:
    """Sends alerts to one Alertmanager (or a load balancer before a cluster of them)."""

    def __init__(
        self,
        url: str,
        *,
        external_url: str = "",
        name: str = "alertmanager",
        resend_s: float = 60.0,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.url = check_url(url, "the Alertmanager URL").rstrip("/")
        self.external_url = external_url.rstrip("/")
        self.resend_s = resend_s
        """Open alerts are sent again this often (the dispatcher does it)."""
        self.timeout_s = timeout_s
        self._clock = clock

    def alert_json(self, alert: Alert) -> dict[str, Any]:
        """The alert in Alertmanager's ``postableAlert`` shape."""
        labels = {
            "alertname": alert.policy,
            "severity": alert.severity,
            "policy": alert.policy,
            "node": alert.node_id,
            "workload_id": alert.workload_id,
        }
        annotations = {
            "summary": alert.summary,
            "description": json.dumps(dict(alert.details), sort_keys=True),
            "alert_id": alert.alert_id,
        }
        if alert.acked_by:
            annotations["acknowledged_by"] = alert.acked_by
        ends = alert.resolved_s
        if ends is None:
            ends = self._clock() + HOLD_FACTOR * max(self.resend_s, 1.0)
        out: dict[str, Any] = {
            "labels": {k: v for k, v in labels.items() if v},
            "annotations": {k: v for k, v in annotations.items() if v},
            "startsAt": rfc3339(alert.raised_s, milliseconds=True),
            "endsAt": rfc3339(ends, milliseconds=True),
        }
        if self.external_url:
            out["generatorURL"] = f"{self.external_url}/alerts/{alert.alert_id}"
        return out

    def deliver(self, alert: Alert) -> None:
        body = json.dumps([self.alert_json(alert)]).encode()
        post_json(f"{self.url}/api/v2/alerts", body, {}, self.timeout_s)
