"""``backstop alerts [--all] [-w] [-o json]`` and ``backstop alerts ack ID``.

The listing shows open alerts (firing or acknowledged), newest first; ``--all`` adds the
resolved ones. ``-o json`` prints each alert in the shape the webhook sends
(:func:`backstop.core.alerts.alert_to_dict`, see ``docs/alerts.md``). What a tenant's
workload put into an alert (its id, its labels) is escaped before it reaches the terminal.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from backstop.cli import render
from backstop.cli.client import ControllerClient
from backstop.cli.connect import with_client
from backstop.cli.operate import user_of
from backstop.cli.output import Layout, emit
from backstop.cli.watching import watchable
from backstop.core.alerts import Alert, alert_to_dict


def _list(client: ControllerClient, args: argparse.Namespace) -> int:
    alerts = client.list_alerts(include_resolved=args.all, limit=args.limit)
    return emit(args, lambda: [alert_to_dict(a) for a in alerts], lambda lay: _table(alerts, lay))


def _ack(client: ControllerClient, args: argparse.Namespace) -> int:
    alert = client.ack_alert(args.id, user_of(args))
    return emit(
        args,
        lambda: alert_to_dict(alert),
        lambda _layout: (
            f"{render.escape(alert.alert_id)} acknowledged by {render.escape(alert.acked_by)}; "
            "it stays listed until its policy resolves it"
        ),
    )


def _table(alerts: Sequence[Alert], layout: Layout) -> str:
    if not alerts:
        return "no open alerts"
    rows = [
        (
            a.alert_id,
            a.severity,
            a.state.value,
            a.policy,
            a.node_id or "-",
            a.workload_id or "-",
            render.age(a.raised_s),
            a.acked_by or "-",
            a.summary,
        )
        for a in alerts
    ]  # every cell is escaped by the table
    return render.table(
        ("id", "severity", "state", "policy", "node", "workload", "age", "acked by", "summary"),
        rows,
        width=layout.width,
        cut=("workload", "summary"),
    )


alerts = with_client(watchable(_list))
ack = with_client(_ack)
