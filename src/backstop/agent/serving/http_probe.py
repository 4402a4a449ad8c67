"""One bounded HTTP GET to a workload's own port.

The connection is made by a ``connect(port)`` the caller gives (loopback in the agent's own
network namespace, or a socket made inside the workload's), so the probe never reaches past
the workload. Every read is bounded: ``timeout_s`` for the whole exchange, ``max_bytes`` of
body (a larger answer is refused, not truncated into a wrong number).

The exchange is written here over a plain socket (one ``GET`` with ``Connection: close``; a
body framed by its length, by chunks, or by the close), rather than with ``http.client``,
whose import (its e-mail header parser) costs the agent about 2 MiB of its memory budget.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_HEAD_BYTES = 64 * 1024
TIMEOUT_S = 1.0

Connect = Callable[[int, float], socket.socket]


class ProbeFailed(Exception):
    """The port did not answer a GET with a readable 200 in time."""


def loopback(port: int, timeout_s: float) -> socket.socket:
    """A TCP connection to ``127.0.0.1:port`` in the agent's own network namespace."""
    return socket.create_connection(("127.0.0.1", port), timeout=timeout_s)


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
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Accept: text/plain, application/json\r\nConnection: close\r\n\r\n"
    )
    try:
        with connect(port, timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(request.encode("latin-1"))
            reader = _Reader(sock, deadline, f"{path} took longer than {timeout_s} s")
            status, headers = _head(reader, path)
            if status != 200:
                raise ProbeFailed(f"{path} answered {status}")
            return _body(reader, headers, f"{path} answered more than {max_bytes} bytes", max_bytes)
    except OSError as exc:
        raise ProbeFailed(f"{path}: {exc}") from exc
    except ValueError as exc:  # a chunk size that is not hexadecimal
        raise ProbeFailed(f"{path}: malformed answer ({exc})") from exc


class _Reader:
    """Buffered reads from ``sock`` that fail with ``late`` once the deadline has passed."""

    def __init__(self, sock: socket.socket, deadline: float, late: str) -> None:
        self._sock = sock
        self._deadline = deadline
        self._late = late
        self._buffer = bytearray()
        self.closed = False

    def fill(self) -> None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise ProbeFailed(self._late)
        self._sock.settimeout(left)
        try:
            chunk = self._sock.recv(65536)
        except TimeoutError:
            raise ProbeFailed(self._late) from None
        self.closed = not chunk
        self._buffer += chunk

    def line(self, limit: int) -> bytes:
        """One line, its end taken off; ProbeFailed when over ``limit`` or cut short."""
        while (end := self._buffer.find(b"\n")) < 0:
            if len(self._buffer) > limit or self.closed:
                raise ProbeFailed("malformed answer: a line too long or cut short")
            self.fill()
        line = bytes(self._buffer[:end]).rstrip(b"\r")
        del self._buffer[: end + 1]
        return line

    def take(self, n: int) -> bytes:
        """Exactly ``n`` bytes; ProbeFailed when the connection ends first."""
        while len(self._buffer) < n:
            if self.closed:
                raise ProbeFailed("malformed answer: the body was cut short")
            self.fill()
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    def rest(self, limit: int, too_long: str) -> bytes:
        """Everything until the connection closes, at most ``limit`` bytes."""
        while len(self._buffer) <= limit:
            if self.closed:
                return bytes(self._buffer)
            self.fill()
        raise ProbeFailed(too_long)


def _head(reader: _Reader, path: str) -> tuple[int, dict[str, str]]:
    status_line = reader.line(MAX_HEAD_BYTES).decode("latin-1").split()
    if (
        len(status_line) < 2
        or not status_line[0].startswith("HTTP/")
        or not status_line[1].isdigit()
    ):
        raise ProbeFailed(f"{path}: not an HTTP answer")
    headers: dict[str, str] = {}
    while line := reader.line(MAX_HEAD_BYTES).decode("latin-1"):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line[1]), headers


def _body(reader: _Reader, headers: dict[str, str], too_long: str, max_bytes: int) -> str:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        while size := int(reader.line(MAX_HEAD_BYTES).split(b";")[0] or b"0", 16):
            if len(body) + size > max_bytes:
                raise ProbeFailed(too_long)
            body += reader.take(size)
            reader.line(2)  # the chunk's CRLF
        data = bytes(body)
    elif (length := headers.get("content-length", "")).isdigit():
        if int(length) > max_bytes:
            raise ProbeFailed(too_long)
        data = reader.take(int(length))
    else:
        data = reader.rest(max_bytes, too_long)
    return data.decode("utf-8", errors="replace")
