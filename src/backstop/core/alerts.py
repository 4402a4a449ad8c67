"""Alerts: what a policy raises when it sees something an operator should know about.

:class:`Alert` is the record the controller keeps (one per dedup key: a policy and what it
fired on), :class:`AlertSpec` what a raise says, :class:`AlertState` its lifecycle (firing →
acknowledged → resolved, and firing again after a resolve); each change of state is delivered
to the sinks as an :class:`AlertDelivery`. :func:`alert_to_dict` and :func:`alert_from_dict` are
the one JSON shape of the record (the stored delivery payload, the webhook body and ``-o json``
all use it); times keep their seconds and get an RFC 3339 twin, as docs/json.md describes.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from backstop.core.times import rfc3339

API_VERSION = "backstop.io/v1"
TIME_FIELDS = ("raised_s", "last_seen_s", "acked_s", "resolved_s")
"""The record's times in seconds since the epoch; each gets a twin without ``_s``."""


class AlertState(enum.StrEnum):
    """Where an alert is: firing until acknowledged or resolved; a resolved one can fire again."""

    FIRING = "firing"
    """The condition holds and nobody has said they are on it."""
    ACKNOWLEDGED = "acknowledged"
    """An operator has seen it; it keeps its place until the policy resolves it."""
    RESOLVED = "resolved"
    """The condition cleared (the policy resolved it); a new raise fires it again."""

    @property
    def open(self) -> bool:
        """Firing or acknowledged: the condition has not cleared."""
        return self is not AlertState.RESOLVED


@dataclass(frozen=True, slots=True)
class AlertSpec:
    """What raising an alert says; ``dedup_key`` names the condition (policy and workload)."""

    dedup_key: str
    """One alert per key: e.g. ``<policy>/<workload id>``."""
    policy: str
    """The policy's name (Alertmanager's ``alertname``)."""
    severity: str
    """The policy's word for it (``info``, ``warning``, ``critical``...)."""
    summary: str
    """One line for people."""
    policy_version: int = 0
    node_id: str = ""
    workload_id: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    """Anything JSON can hold: the values the policy saw."""


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert as the controller keeps it."""

    alert_id: str
    dedup_key: str
    policy: str
    policy_version: int
    severity: str
    node_id: str
    workload_id: str
    summary: str
    details: Mapping[str, Any]
    state: AlertState
    raised_s: float
    """When it last started firing (a resolved alert that fires again starts afresh)."""
    last_seen_s: float
    """When a raise last found the condition still there."""
    acked_by: str = ""
    acked_s: float | None = None
    resolved_s: float | None = None


def details_json(details: Mapping[str, Any]) -> str:
    """The details as stored: compact JSON with sorted keys."""
    return json.dumps(dict(details), sort_keys=True, separators=(",", ":"))


def alert_to_dict(alert: Alert) -> dict[str, Any]:
    """The alert as a JSON object: ``apiVersion``, ``kind``, every field, the time twins."""
    out: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "Alert",
        "alert_id": alert.alert_id,
        "dedup_key": alert.dedup_key,
        "policy": alert.policy,
        "policy_version": alert.policy_version,
        "severity": alert.severity,
        "node_id": alert.node_id,
        "workload_id": alert.workload_id,
        "summary": alert.summary,
        "details": dict(alert.details),
        "state": alert.state.value,
        "acked_by": alert.acked_by,
    }
    for name in TIME_FIELDS:
        value = getattr(alert, name)
        out[name] = value
        out[name.removesuffix("_s")] = rfc3339(value, milliseconds=True) if value else None
    return out


def alert_from_dict(data: Mapping[str, Any]) -> Alert:
    """The inverse of :func:`alert_to_dict` (the twins and ``kind`` are ignored)."""
    values = {f.name: data[f.name] for f in fields(Alert)}
    values["details"] = dict(values["details"])
    values["state"] = AlertState(values["state"])
    return Alert(**values)


@dataclass(frozen=True, slots=True)
class AlertDelivery:
    """One change of one alert (firing, acknowledged or resolved) waiting for one sink, claimed
    from the store's queue."""

    delivery_id: int
    sink: str
    alert: Alert
    """The alert as it was just after the change: its ``state`` says which change it was."""
    attempts: int
    """Failed attempts so far."""
