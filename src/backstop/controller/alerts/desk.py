"""The alert desk: where the controller raises, acknowledges and resolves alerts.

:class:`AlertDesk` is what policy evaluation and the alert RPCs call. Each change is one store
transaction that also queues a delivery for every sink the dispatcher has; the dispatcher is
then woken to send it at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from backstop.controller.alerts.dispatcher import AlertDispatcher
from backstop.core.alerts import Alert, AlertSpec


class AlertDesk:
    """Alert changes, queued for ``dispatcher``'s sinks."""

    def __init__(self, dispatcher: AlertDispatcher, clock: Callable[[], float] = time.time) -> None:
        self.dispatcher = dispatcher
        self.store = dispatcher.store
        self._clock = clock

    def raise_alert(self, spec: AlertSpec) -> Alert:
        """Fire ``spec``'s alert, or refresh it if it is already open (nothing is sent then)."""
        before = self._clock()
        alert = self.store.raise_alert(spec, before, self.dispatcher.sink_names)
        if alert.raised_s == before:
            self.dispatcher.wake()
        return alert

    def ack(self, alert_id: str, by: str) -> Alert:
        """Acknowledge a firing alert (``NotFound``, ``Conflict``)."""
        alert = self.store.ack_alert(alert_id, by, self._clock(), self.dispatcher.sink_names)
        self.dispatcher.wake()
        return alert

    def resolve(self, alert_id: str) -> Alert:
        """Resolve an open alert (``NotFound``, ``Conflict``)."""
        alert = self.store.resolve_alert(alert_id, self._clock(), self.dispatcher.sink_names)
        self.dispatcher.wake()
        return alert
