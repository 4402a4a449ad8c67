"""The webhook sink against a real HTTP receiver: the body, the signature a receiver can check,
and a receiver that is down, then failing, then up, with the store reopened in between."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from backstop.controller.alerts.desk import AlertDesk
from backstop.controller.alerts.dispatcher import AlertDispatcher, backoff_s
from backstop.controller.alerts.webhook import WebhookSink
from backstop.controller.store import open_store
from backstop.core.alerts import Alert, AlertState, alert_from_dict, alert_to_dict
from backstop.core.errors import InvalidInput, Unavailable
from tests.controller.alerts.conftest import alert_spec
from tests.support.alert_receivers import Received, Receiver

SPEC = alert_spec()

ALERT = Alert(
    "alr-1",
    SPEC.dedup_key,
    "gpu-memory",
    2,
    "critical",
    "n1",
    "wl-a",
    "s",
    {},
    AlertState.FIRING,
    1.0,
    1.0,
)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _docs_recipe() -> Callable[..., bool]:
    """The receiver's check as docs/alerts.md shows it."""
    text = (Path(__file__).parents[3] / "docs" / "alerts.md").read_text()
    namespace: dict[str, Any] = {}
    exec(text.split("```python\n")[1].split("```")[0], namespace)  # noqa: S102
    recipe: Callable[..., bool] = namespace["verified"]
    return recipe


VERIFIED = _docs_recipe()


def _verified(request: Received, secret: bytes) -> dict[str, object]:
    """What a receiver does: check the signature (the docs' recipe), then read the body."""
    assert VERIFIED(secret, request.headers, request.body, max_age_s=10**10)
    body: dict[str, object] = json.loads(request.body)
    return body


def test_a_change_is_posted_signed(receiver: Receiver, tmp_path: Path) -> None:
    receiver.listen()
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    clock = Clock(1_800_000_000.0)
    store = open_store(f"sqlite:///{tmp_path / 'b.db'}")
    dispatcher = AlertDispatcher(
        store, [WebhookSink(receiver.url, secret, clock=clock)], clock=clock
    )
    desk = AlertDesk(dispatcher, clock)
    alert = desk.raise_alert(SPEC)
    assert dispatcher.drain() == 1
    (request,) = receiver.received
    assert request.path == "/hook"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Backstop-Timestamp"] == "1800000000"
    body = _verified(request, b"s3cret")
    assert body["apiVersion"] == "backstop.io/v1"
    assert body["kind"] == "Alert"
    assert body["raised"] == "2027-01-15T08:00:00.000Z"
    assert alert_from_dict(body) == alert
    tampered = Received(request.path, request.headers, request.body.replace(b"97.0", b"10.0"))
    with pytest.raises(AssertionError):
        _verified(tampered, b"s3cret")
    desk.ack(alert.alert_id, "alice")
    assert dispatcher.drain() == 1
    acked = _verified(receiver.received[1], b"s3cret")
    assert (acked["state"], acked["acked_by"]) == ("acknowledged", "alice")
    assert dispatcher.drain() == 0
    store.close()


def test_a_receiver_that_is_down_gets_the_alert_once_it_is_up(
    receiver: Receiver, store_url: str, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"k")
    clock = Clock(1000.0)

    def dispatcher_on(store_url: str) -> AlertDispatcher:
        sink = WebhookSink(receiver.url, secret, timeout_s=5, clock=clock)
        return AlertDispatcher(open_store(store_url), [sink], clock=clock, rng=lambda: 1.0)

    first = dispatcher_on(store_url)
    alert = AlertDesk(first, clock).raise_alert(SPEC)
    assert first.drain() == 1  # connection refused
    assert receiver.received == []
    assert first.store.due_deliveries(clock.now + 0.9) == []
    clock.now += 1.0  # the first retry, 1 s later
    receiver.statuses = [500]
    receiver.listen()
    assert first.drain() == 1
    assert len(receiver.received) == 1  # answered 500
    assert first.store.alert_backlog() == (1, 1)
    first.store.close()

    second = dispatcher_on(store_url)  # a restarted controller, the same database
    assert second.drain() == 0  # the next retry is 2 s after the second failure
    clock.now += 2.0
    assert second.drain() == 1
    body = _verified(receiver.received[-1], b"k")
    assert (body["alert_id"], body["state"]) == (alert.alert_id, AlertState.FIRING.value)
    assert len(receiver.received) == 2
    assert second.store.alert_backlog() == (1, 0)
    second.store.close()


def test_backoff_doubles_from_one_second_to_five_minutes_with_jitter() -> None:
    assert [backoff_s(n, lambda: 1.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert backoff_s(9, lambda: 1.0) == 256.0
    assert backoff_s(10, lambda: 1.0) == backoff_s(1000, lambda: 1.0) == 300.0
    assert backoff_s(10, lambda: 0.0) == 150.0


def test_redirects_are_not_followed_and_urls_are_checked(
    receiver: Receiver, tmp_path: Path
) -> None:
    receiver.statuses = [302, 307]
    receiver.listen()
    sink = WebhookSink(receiver.url)
    for _ in range(2):
        with pytest.raises(Unavailable, match=r"elsewhere\.invalid"):
            sink.deliver(alert_from_dict(alert_to_dict(ALERT)))
    assert len(receiver.received) == 2
    with pytest.raises(InvalidInput):
        WebhookSink("file:///etc/passwd")
    with pytest.raises(InvalidInput):
        WebhookSink("http:///nohost")
    with pytest.raises(InvalidInput, match="secret file"):
        WebhookSink(receiver.url, tmp_path / "missing")
