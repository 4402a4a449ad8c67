"""A running controller delivers alerts to the sinks its settings name: raised through
``ControllerServer.alerts``, sent by the dispatcher task to a webhook and an Alertmanager."""

from __future__ import annotations

import asyncio
from pathlib import Path

from backstop.controller import metrics
from backstop.controller.server import ControllerServer
from backstop.core.settings import ControllerSettings
from tests.controller.alerts.conftest import alert_spec
from tests.support.alert_receivers import Alertmanager, Receiver


def test_the_controller_delivers_to_its_configured_sinks(
    tmp_path: Path, receiver: Receiver, alertmanager: Alertmanager
) -> None:
    receiver.listen()
    secret = tmp_path / "webhook.secret"
    secret.write_text("k")
    settings = ControllerSettings(
        listen="127.0.0.1:0",
        insecure=True,
        store_url=f"sqlite:///{tmp_path}/d",
        alert_webhook_url=receiver.url,
        alert_webhook_secret_file=secret,
        alertmanager_url=alertmanager.url,
    )

    async def scenario() -> None:
        server = ControllerServer(settings)
        await server.start()
        try:
            assert server.alert_dispatcher.sink_names == ("webhook", "alertmanager")
            alert = server.alerts.raise_alert(alert_spec())
            for _ in range(100):
                if receiver.received and await asyncio.to_thread(alertmanager.alerts):
                    break
                await asyncio.sleep(0.05)
            assert len(receiver.received) == 1
            assert "X-Backstop-Signature" in receiver.received[0].headers
            (listed,) = await asyncio.to_thread(alertmanager.alerts)
            assert listed["annotations"]["alert_id"] == alert.alert_id
            for _ in range(100):
                if metrics.ALERT_DELIVERIES_PENDING.labels().value == 0:
                    break
                await asyncio.sleep(0.05)
            assert metrics.ALERTS_FIRING.labels().value == 1
            assert metrics.ALERT_DELIVERIES_PENDING.labels().value == 0
        finally:
            await server.stop(0)

    asyncio.run(scenario())
