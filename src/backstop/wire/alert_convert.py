"""Alerts between their record (:class:`backstop.core.alerts.Alert`) and the control API."""

from __future__ import annotations

import json

from backstop.api.v1 import control_pb2
from backstop.core.alerts import Alert, AlertState, details_json
from backstop.core.errors import InvalidInput
from backstop.wire.checks import text

_STATES = {s: getattr(control_pb2, f"ALERT_STATE_{s.name}") for s in AlertState}
_FROM_PB = {number: state for state, number in _STATES.items()}
MAX_DETAILS = 64 * 1024


def alert_to_pb(a: Alert) -> control_pb2.Alert:
    return control_pb2.Alert(
        alert_id=a.alert_id,
        dedup_key=a.dedup_key,
        policy=a.policy,
        policy_version=a.policy_version,
        severity=a.severity,
        node_id=a.node_id,
        workload_id=a.workload_id,
        summary=a.summary,
        details_json=details_json(a.details),
        state=_STATES[a.state],
        raised_at_s=a.raised_s,
        last_seen_at_s=a.last_seen_s,
        acked_by=a.acked_by,
        acked_at_s=a.acked_s or 0.0,
        resolved_at_s=a.resolved_s or 0.0,
    )


def alert_from_pb(msg: control_pb2.Alert) -> Alert:
    state = _FROM_PB.get(msg.state)
    if state is None:
        raise InvalidInput(f"the controller sent an alert in an unknown state ({msg.state})")
    try:
        details = json.loads(text(msg.details_json, "alert details", MAX_DETAILS) or "{}")
    except ValueError as exc:
        raise InvalidInput("the controller sent alert details that are not JSON") from exc
    if not isinstance(details, dict):
        raise InvalidInput("the controller sent alert details that are not a JSON object")
    return Alert(
        alert_id=text(msg.alert_id, "alert id", 64),
        dedup_key=text(msg.dedup_key, "dedup key", 512),
        policy=text(msg.policy, "policy", 253),
        policy_version=msg.policy_version,
        severity=text(msg.severity, "severity", 32),
        node_id=text(msg.node_id, "node id", 253),
        workload_id=text(msg.workload_id, "workload id", 253),
        summary=text(msg.summary, "summary", 4096),
        details=details,
        state=state,
        raised_s=msg.raised_at_s,
        last_seen_s=msg.last_seen_at_s,
        acked_by=text(msg.acked_by, "acked by", 256),
        acked_s=msg.acked_at_s or None,
        resolved_s=msg.resolved_at_s or None,
    )
