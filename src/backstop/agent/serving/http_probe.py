"""One bounded HTTP GET to a workload's own port.

The connection is made by a ``connect(port)`` the caller gives (loopback in the agent's own
network namespace, or a socket made inside the workload's), so the probe never reaches past
the workload. Every read is bounded: ``timeout_s`` for the whole exchange, ``max_bytes`` of
body (a larger answer is refused, not truncated into a wrong number).
"""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Callable

MAX_BODY_BYTES = 4 * 1024 * 1024
TIMEOUT_S = 1.0

Connect = Callable[[int, float], socket.socket]


class ProbeFailed(Exception):
    """The port did not answer a GET with a readable 200 in time."""


def loopback(port: int, timeout_s: float) -> socket.socket:
    """A TCP connection to ``127.0.0.1:port`` in the agent's own network namespace."""
    return socket.create_connection(("127.0.0.1", port), timeout=timeout_s)


class _Connection(http.client.HTTPConnection):
    def __init__(self, port: int, connect: Connect, timeout_s: float) -> None:
        super().__init__("127.0.0.1", port, timeout=timeout_s)
        self._make = connect
        self._timeout_s = timeout_s

    def connect(self) -> None:
        self.sock = self._make(self.port, self._timeout_s)
        self.sock.settimeout(self._timeout_s)


def get(
    port: int,
    path: str,
    connect: Connect = loopback,
    *,
    timeout_s: float = TIMEOUT_S,
    max_bytes: int = MAX_BODY_BYTES,
) -> str:
    """The body of ``GET path`` on ``port``, decoded as UTF-8 (bad bytes replaced)."""
    deadline = time.monotonic() + timeout_s
    conn = _Connection(port, connect, timeout_s)
    try:
        conn.request("GET", path, headers={"Accept": "text/plain, application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise ProbeFailed(f"{path} answered {resp.status}")
        body = bytearray()
        while chunk := resp.read1(65536):
            body += chunk
            if len(body) > max_bytes:
                raise ProbeFailed(f"{path} answered more than {max_bytes} bytes")
            if time.monotonic() > deadline:
                raise ProbeFailed(f"{path} took longer than {timeout_s} s")
        return body.decode("utf-8", errors="replace")
    except (OSError, http.client.HTTPException) as exc:
        raise ProbeFailed(f"{path}: {exc}") from exc
    finally:
        conn.close()
