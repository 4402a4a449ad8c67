"""Alerts and their delivery queue, as both SQL backends keep them.

:class:`SqlAlerts` owns the ``alerts`` table (one row per dedup key) and ``alert_deliveries``
(one row per alert per sink per change, retried until delivered). Every change of an alert
(raised, acknowledged, resolved) enqueues its deliveries in the same transaction, built on the
locked read-then-write (``_rewrite``) a backend supplies, so a change is never recorded without
its deliveries nor delivered without being recorded. :meth:`SqlAlerts.due_deliveries` claims
deliveries for a lease, oldest first and only the first undelivered change of each alert for
each sink, so replicas sharing a PostgreSQL store do not send the same one at once and a
receiver sees an alert's changes in order.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from backstop.controller.store.sql_access import SqlAccess, Statement
from backstop.core.alerts import (
    Alert,
    AlertDelivery,
    AlertSpec,
    AlertState,
    alert_from_dict,
    alert_to_dict,
    details_json,
)
from backstop.core.errors import Conflict, NotFound
from backstop.core.ids import new_alert_id

ALERT_COLUMNS = (
    "alert_id, dedup_key, policy, policy_version, severity, node_id, workload_id, summary, "
    "details, state, raised_s, last_seen_s, acked_by, acked_s, resolved_s"
)
COLUMN_NAMES = tuple(column.strip() for column in ALERT_COLUMNS.split(","))
ALERT_SELECT = f"SELECT {ALERT_COLUMNS} FROM alerts"  # noqa: S608
ENQUEUE = """INSERT INTO alert_deliveries (alert_id, sink, payload, attempts, next_attempt_s)
    SELECT alert_id, ?, ?, 0, ? FROM alerts WHERE alert_id=?"""
"""One delivery of one change, written only if the alert's row is there (a raise that lost
the race for a new dedup key to another replica enqueues nothing)."""
DUE = """SELECT d.delivery_id, d.sink, d.payload, d.attempts FROM alert_deliveries d
    WHERE d.delivered_s IS NULL AND d.next_attempt_s <= ? AND NOT EXISTS (
        SELECT 1 FROM alert_deliveries e WHERE e.alert_id = d.alert_id AND e.sink = d.sink
            AND e.delivered_s IS NULL AND e.delivery_id < d.delivery_id)
    ORDER BY d.next_attempt_s, d.delivery_id LIMIT ?"""
CLAIM_S = 60.0
"""How long a claimed delivery is left to its claimant before it is due again."""
ERROR_CHARS = 500


def alert_from_row(row: Sequence[Any]) -> Alert:
    """An ``alerts`` row, in :data:`ALERT_COLUMNS` order."""
    values = dict(zip(COLUMN_NAMES, row, strict=True))
    values["details"] = json.loads(values["details"])
    values["state"] = AlertState(values["state"])
    return Alert(**values)


def _row(alert: Alert) -> tuple[object, ...]:
    """The alert's column values, in :data:`ALERT_COLUMNS` order."""
    return (
        alert.alert_id,
        alert.dedup_key,
        alert.policy,
        alert.policy_version,
        alert.severity,
        alert.node_id,
        alert.workload_id,
        alert.summary,
        details_json(alert.details),
        alert.state.value,
        alert.raised_s,
        alert.last_seen_s,
        alert.acked_by,
        alert.acked_s,
        alert.resolved_s,
    )


UPDATE_ALERT = "UPDATE alerts SET {} WHERE alert_id=?".format(  # noqa: S608
    ", ".join(f"{column}=?" for column in COLUMN_NAMES[2:])
)
"""Every column but the two that name the alert (its id and dedup key)."""


def _update(alert: Alert) -> Statement:
    return UPDATE_ALERT, (*_row(alert)[2:], alert.alert_id)


def _enqueue(alert: Alert, sinks: Sequence[str], now_s: float) -> list[Statement]:
    payload = json.dumps(alert_to_dict(alert), sort_keys=True)
    return [(ENQUEUE, (sink, payload, now_s, alert.alert_id)) for sink in sinks]


class SqlAlerts(SqlAccess):
    """The alert half of the store over SQL."""

    # --- alerts -------------------------------------------------------------------------

    def raise_alert(self, spec: AlertSpec, now_s: float, sinks: Sequence[str] = ()) -> Alert:
        """Record that ``spec``'s condition holds. A new or resolved dedup key fires (a new
        change, delivered to ``sinks``); one already firing or acknowledged only has its
        ``last_seen_s``, summary and details refreshed, and nothing is delivered."""
        fresh = Alert(
            new_alert_id(),
            spec.dedup_key,
            spec.policy,
            spec.policy_version,
            spec.severity,
            spec.node_id,
            spec.workload_id,
            spec.summary,
            dict(spec.details),
            AlertState.FIRING,
            now_s,
            now_s,
        )

        def rewrite(rows: list[Any]) -> list[Statement]:
            if not rows:
                insert = (
                    f"INSERT INTO alerts ({ALERT_COLUMNS}) VALUES ({', '.join('?' * 15)}) "  # noqa: S608
                    "ON CONFLICT (dedup_key) DO NOTHING",
                    _row(fresh),
                )
                return [insert, *_enqueue(fresh, sinks, now_s)]
            alert_id, state = str(rows[0][0]), AlertState(rows[0][1])
            if state.open:
                refresh = """UPDATE alerts SET last_seen_s=?, summary=?, details=?
                    WHERE alert_id=?"""
                return [(refresh, (now_s, spec.summary, details_json(spec.details), alert_id))]
            refired = replace(fresh, alert_id=alert_id)
            return [_update(refired), *_enqueue(refired, sinks, now_s)]

        self._rewrite(
            "SELECT alert_id, state FROM alerts WHERE dedup_key=?", (spec.dedup_key,), rewrite
        )
        (row,) = self._query(f"{ALERT_SELECT} WHERE dedup_key=?", (spec.dedup_key,))
        return alert_from_row(row)

    def ack_alert(self, alert_id: str, by: str, now_s: float, sinks: Sequence[str] = ()) -> Alert:
        """Acknowledge a firing alert (``NotFound``; ``Conflict`` unless it is firing)."""
        return self._change(
            alert_id,
            sinks,
            now_s,
            lambda a: replace(a, state=AlertState.ACKNOWLEDGED, acked_by=by, acked_s=now_s),
        )

    def resolve_alert(self, alert_id: str, now_s: float, sinks: Sequence[str] = ()) -> Alert:
        """Resolve an open alert (``NotFound``; ``Conflict`` when it is already resolved)."""
        return self._change(
            alert_id,
            sinks,
            now_s,
            lambda a: replace(a, state=AlertState.RESOLVED, resolved_s=now_s),
        )

    def _change(
        self,
        alert_id: str,
        sinks: Sequence[str],
        now_s: float,
        apply: Callable[[Alert], Alert],
    ) -> Alert:
        changed: list[Alert] = []

        def rewrite(rows: list[Any]) -> list[Statement]:
            if not rows:
                raise NotFound(f"no alert {alert_id}")
            alert = alert_from_row(rows[0])
            after = apply(alert)
            resolving = after.state is AlertState.RESOLVED
            if not (alert.state is AlertState.FIRING or (resolving and alert.state.open)):
                raise Conflict(f"alert {alert_id} is {alert.state}; it cannot be {after.state}")
            changed.append(after)
            return [_update(after), *_enqueue(after, sinks, now_s)]

        self._rewrite(f"{ALERT_SELECT} WHERE alert_id=?", (alert_id,), rewrite)
        return changed[0]

    def get_alert(self, alert_id: str) -> Alert | None:
        rows = self._query(f"{ALERT_SELECT} WHERE alert_id=?", (alert_id,))
        return alert_from_row(rows[0]) if rows else None

    def list_alerts(self, states: Sequence[AlertState] = (), limit: int = 100) -> list[Alert]:
        """Alerts in ``states`` (every state when empty), most recently raised first; at most
        ``limit`` of them (0: all)."""
        where = ""
        args: tuple[object, ...] = ()
        if states:
            clause, args = self.dialect.in_list("state", [s.value for s in states])
            where = f" WHERE {clause}"
        rows = self._query(
            f"{ALERT_SELECT}{where} ORDER BY raised_s DESC, alert_id LIMIT ?",
            (*args, limit if limit > 0 else self.dialect.no_limit),
        )
        return [alert_from_row(r) for r in rows]

    def alert_backlog(self) -> tuple[int, int]:
        """(alerts firing, deliveries not yet delivered)."""
        ((firing,),) = self._query(
            "SELECT COUNT(*) FROM alerts WHERE state=?", (AlertState.FIRING.value,)
        )
        ((pending,),) = self._query(
            "SELECT COUNT(*) FROM alert_deliveries WHERE delivered_s IS NULL"
        )
        return int(firing), int(pending)

    # --- the delivery queue -------------------------------------------------------------

    def due_deliveries(
        self, now_s: float, limit: int = 100, claim_s: float = CLAIM_S
    ) -> list[AlertDelivery]:
        """Claim up to ``limit`` deliveries due at ``now_s`` (each alert's first undelivered
        change per sink), oldest first: they are not due again for ``claim_s`` unless marked."""
        claimed: list[AlertDelivery] = []

        def rewrite(rows: list[Any]) -> list[Statement]:
            for delivery_id, sink, payload, attempts in rows:
                claimed.append(
                    AlertDelivery(
                        int(delivery_id),
                        str(sink),
                        alert_from_dict(json.loads(payload)),
                        int(attempts),
                    )
                )
            return [
                (
                    "UPDATE alert_deliveries SET next_attempt_s=? WHERE delivery_id=?",
                    (now_s + claim_s, d.delivery_id),
                )
                for d in claimed
            ]

        self._rewrite(DUE, (now_s, limit), rewrite)
        return claimed

    def mark_delivered(self, delivery_id: int, now_s: float) -> None:
        self._write(
            (
                "UPDATE alert_deliveries SET delivered_s=?, last_error='' WHERE delivery_id=?",
                (now_s, delivery_id),
            )
        )

    def mark_failed(self, delivery_id: int, next_attempt_s: float, error: str) -> None:
        """Count a failed attempt; the delivery is due again at ``next_attempt_s``."""
        self._write(
            (
                """UPDATE alert_deliveries SET attempts=attempts + 1, next_attempt_s=?,
                       last_error=? WHERE delivery_id=? AND delivered_s IS NULL""",
                (next_attempt_s, error[:ERROR_CHARS], delivery_id),
            )
        )

    def prune_alert_deliveries(self, older_than_s: float) -> int:
        """Forget deliveries delivered before ``older_than_s``; how many went."""
        (pruned,) = self._write(
            ("DELETE FROM alert_deliveries WHERE delivered_s < ?", (older_than_s,))
        )
        return pruned
