"""Prometheus metrics of the controller (names are part of the operator-facing contract)."""

from __future__ import annotations

from backstop.telemetry.series import Counter, Gauge, Histogram

AGENTS_CONNECTED = Gauge("backstop_controller_agents_connected", "Agents with an open stream")
REPORTS = Counter("backstop_controller_reports_total", "Reports stored from agents")
REPORTS_DUPLICATE = Counter(
    "backstop_controller_reports_duplicate_total", "Reports ignored as already seen"
)
STREAM_ERRORS = Counter(
    "backstop_controller_stream_errors_total", "Agent streams closed for bad input", ["reason"]
)
CORRECTIONS = Counter("backstop_controller_corrections_total", "Corrections created", ["action"])
ACKS = Counter("backstop_controller_acks_total", "Command acknowledgements", ["state"])
ACK_SECONDS = Histogram(
    "backstop_controller_ack_seconds",
    "Seconds from dispatch to acknowledgement",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
AWAITING_APPROVAL = Gauge(
    "backstop_controller_corrections_awaiting_approval",
    "Corrections proposed and waiting for the approvals their action needs",
)
TARGETS_UNREACHABLE = Gauge(
    "backstop_controller_targets_unreachable",
    "Targets of open corrections that have not acknowledged yet (delivery is still tried)",
)
ALERTS_FIRING = Gauge(
    "backstop_controller_alerts_firing", "Alerts firing (raised and not acknowledged or resolved)"
)
ALERT_DELIVERIES_PENDING = Gauge(
    "backstop_controller_alert_deliveries_pending",
    "Alert changes queued for a sink and not yet delivered (retried until they are)",
)
ALERT_DELIVERIES = Counter(
    "backstop_controller_alert_deliveries_total", "Alert changes delivered", ["sink"]
)
ALERT_DELIVERIES_FAILED = Counter(
    "backstop_controller_alert_deliveries_failed_total",
    "Attempts to deliver an alert that failed (each is retried with backoff)",
    ["sink"],
)
