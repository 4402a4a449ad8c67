"""Prometheus metrics of the controller link (names are part of the operator-facing contract)."""

from __future__ import annotations

from backstop.telemetry.series import Counter, Gauge

CONNECTED = Gauge("backstop_agent_connected", "1 while the controller stream is up")
REPORTS_SENT = Counter("backstop_agent_reports_sent_total", "Reports written to the stream")
REPORTS_DROPPED = Counter(
    "backstop_agent_reports_dropped_total", "Reports dropped because the spool was full"
)
