"""The webhook sink: each alert change POSTed as the alert's JSON record, signed with HMAC.

The body is :func:`~backstop.core.alerts.alert_to_dict` of the alert just after the change
(``apiVersion``, ``kind: Alert``, its ``state`` saying which change). With a secret file, the
request carries ``X-Backstop-Timestamp`` (whole seconds since the epoch) and
``X-Backstop-Signature: sha256=<hex>``, the HMAC-SHA256 under the secret of the timestamp, a
dot and the body, so a receiver can tell the controller sent it and refuse replays of old
requests (docs/alerts.md has the recipe). The secret is read at every send, so replacing the
file rotates it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path

from backstop.controller.alerts.http_post import check_url, post_json
from backstop.core.alerts import Alert, alert_to_dict
from backstop.core.errors import InvalidInput, Unavailable

SIGNATURE_HEADER = "X-Backstop-Signature"
TIMESTAMP_HEADER = "X-Backstop-Timestamp"


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Backstop-Signature`` value: ``sha256=`` and the hex HMAC of ``timestamp.body``."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class WebhookSink:
    """POSTs every change of every alert to ``url``."""

    resend_s = 0.0
    """Each change is sent once (until delivered)."""

    def __init__(
        self,
        url: str,
        secret_file: Path | None = None,
        *,
        name: str = "webhook",
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.url = check_url(url, "the alert webhook URL")
        if secret_file is not None and not secret_file.is_file():
            raise InvalidInput(f"the webhook secret file {secret_file} does not exist")
        self.secret_file = secret_file
        self.timeout_s = timeout_s
        self._clock = clock

    def body(self, alert: Alert) -> bytes:
        return json.dumps(alert_to_dict(alert), sort_keys=True).encode()

    def deliver(self, alert: Alert) -> None:
        body = self.body(alert)
        timestamp = str(int(self._clock()))
        headers = {TIMESTAMP_HEADER: timestamp}
        if self.secret_file is not None:
            try:
                secret = self.secret_file.read_bytes().strip()
            except OSError as exc:
                raise Unavailable(f"cannot read the webhook secret: {exc}") from exc
            headers[SIGNATURE_HEADER] = signature(secret, timestamp, body)
        post_json(self.url, body, headers, self.timeout_s)
