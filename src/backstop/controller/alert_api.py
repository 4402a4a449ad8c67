"""The alert calls of the control API: list (a viewer) and acknowledge (an operator, audited
before it takes effect). A mixin of :class:`~backstop.controller.control_api.ControlService`,
which supplies the caller checks, the audit and the :class:`AlertDesk`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from backstop.api.v1 import control_pb2
from backstop.controller.alerts.desk import AlertDesk
from backstop.controller.rpc_errors import rpc
from backstop.controller.service_part import ServicePart
from backstop.controller.store.base import Store
from backstop.core.alerts import AlertState
from backstop.core.errors import BackstopError, NotFound
from backstop.security.identities import Role
from backstop.wire.alert_convert import alert_to_pb
from backstop.wire.checks import text

DEFAULT_ALERTS = 100
MAX_ALERTS = 10_000


class AlertCalls(ServicePart):
    _store: Store
    _alerts: AlertDesk
    _audit: Callable[..., None]

    @rpc
    async def ListAlerts(
        self, request: control_pb2.ListAlertsRequest, context: Any
    ) -> control_pb2.ListAlertsResponse:
        self._caller(context, Role.VIEWER, "listing alerts")
        states = () if request.all else (AlertState.FIRING, AlertState.ACKNOWLEDGED)
        limit = min(request.limit or DEFAULT_ALERTS, MAX_ALERTS)
        alerts = self._store.list_alerts(states, limit)
        return control_pb2.ListAlertsResponse(alerts=[alert_to_pb(a) for a in alerts])

    @rpc
    async def AckAlert(
        self, request: control_pb2.AckAlertRequest, context: Any
    ) -> control_pb2.Alert:
        caller = self._caller(
            context, Role.OPERATOR, "acknowledging an alert", request.requested_by
        )
        alert_id = text(request.alert_id, "alert id", 64)
        if self._store.get_alert(alert_id) is None:
            raise NotFound(f"no alert {alert_id!r}; see `backstop alerts --all`")
        self._audit(caller.name, "alert.ack", alert_id)
        try:
            return alert_to_pb(self._alerts.ack(alert_id, caller.name))
        except BackstopError as exc:
            self._audit(caller.name, "alert.ack_refused", alert_id, reason=exc.message)
            raise
