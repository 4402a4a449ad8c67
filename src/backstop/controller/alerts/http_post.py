"""One bounded HTTP POST of a JSON body, the only way alert sinks talk to their receivers.

:func:`post_json` uses the standard library's ``urllib`` with a timeout on every socket
operation, follows no redirect (a receiver that answers 3xx has not taken the alert: that is a
failure, so an alert never leaves for a host nobody configured), reads at most
:data:`MAX_RESPONSE_BYTES` of the answer and raises
:class:`~backstop.core.errors.Unavailable` for anything but a 2xx status, so the dispatcher
retries it.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Mapping
from email.message import Message
from typing import IO, NoReturn

from backstop.core.errors import InvalidInput, Unavailable

MAX_RESPONSE_BYTES = 64 * 1024
"""The most of a receiver's answer that is read (kept for the error message when it fails)."""
ERROR_BODY_CHARS = 200


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Refuses every redirect: the alert goes to the configured URL or nowhere."""

    def redirect_request(  # noqa: PLR0917 (urllib calls it so)
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> NoReturn:
        raise Unavailable(f"{req.full_url} answered {code} redirecting to {newurl}; not followed")


_OPENER = urllib.request.build_opener(_NoRedirects())


def check_url(url: str, what: str) -> str:
    """``url`` if it is an absolute http(s) URL; :class:`InvalidInput` otherwise."""
    scheme, _, rest = url.partition("://")
    if scheme not in ("http", "https") or not rest or rest.startswith("/"):
        raise InvalidInput(f"{what} must be an http:// or https:// URL, got {url!r}")
    return url


def post_json(url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> int:
    """POST ``body`` (JSON) to ``url``; the 2xx status, or :class:`Unavailable`."""
    request = urllib.request.Request(  # noqa: S310 (check_url admits http and https only)
        check_url(url, "an alert receiver"),
        data=body,
        headers={"Content-Type": "application/json", **headers},
        method="POST",
    )
    try:
        with _OPENER.open(request, timeout=timeout_s) as response:
            response.read(MAX_RESPONSE_BYTES)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        answer = exc.read(MAX_RESPONSE_BYTES).decode("utf-8", "replace")[:ERROR_BODY_CHARS]
        raise Unavailable(f"{url} answered HTTP {exc.code}: {answer.strip()}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unavailable(f"cannot POST to {url}: {reason}") from exc
