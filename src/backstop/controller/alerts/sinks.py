"""What an alert sink is, and the sinks the controller's settings name.

A :class:`Sink` has a ``name`` (the one its queued deliveries carry, so it must stay the same
across restarts), a ``resend_s`` (0: each change is delivered once; more: open alerts are sent
again that often) and ``deliver(alert)``, which returns once the receiver has taken the alert
and raises :class:`~backstop.core.errors.Unavailable` otherwise. :func:`sinks_from_settings`
builds the webhook and Alertmanager sinks that :class:`~backstop.core.settings.ControllerSettings`
configures.
"""

from __future__ import annotations

from typing import Protocol

from backstop.controller.alerts.alertmanager import AlertmanagerSink
from backstop.controller.alerts.webhook import WebhookSink
from backstop.core.alerts import Alert
from backstop.core.settings import ControllerSettings


class Sink(Protocol):
    """A receiver of alerts."""

    @property
    def name(self) -> str: ...
    @property
    def resend_s(self) -> float: ...
    def deliver(self, alert: Alert) -> None:
        """Send the alert as it is now; :class:`Unavailable` when the receiver did not take it."""
        ...


def sinks_from_settings(settings: ControllerSettings) -> list[Sink]:
    """The webhook and the Alertmanager sink, each where its URL is set."""
    sinks: list[Sink] = []
    timeout = settings.alert_delivery_timeout_s
    if settings.alert_webhook_url:
        sinks.append(
            WebhookSink(
                settings.alert_webhook_url, settings.alert_webhook_secret_file, timeout_s=timeout
            )
        )
    if settings.alertmanager_url:
        sinks.append(
            AlertmanagerSink(
                settings.alertmanager_url,
                external_url=settings.alert_external_url,
                timeout_s=timeout,
            )
        )
    return sinks
