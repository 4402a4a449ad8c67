"""A small HTTP endpoint serving Prometheus ``/metrics`` and the ``/healthz`` checks.

``/metrics`` is the process's series (:data:`backstop.telemetry.series.REGISTRY`) and its
own CPU, memory and descriptors, each sample given the server's own labels where it has
none of that name (the agent's ``node``, so its series say which node they are from however
they are scraped), followed by any extra exposition text (the agent's DCGM-compatible
series).

The HTTP is the least a scraper and a probe need: one ``GET`` (or ``HEAD``) a connection,
answered and closed, as HTTP/1.0 servers do. It is written here rather than taken from
``http.server``, whose import (its e-mail header parser and HTTP client) costs the agent
2.6 MiB of its 60 MiB budget. A request line or header over 8 KiB, more than 100 headers,
or a client silent for 10 s ends the connection.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from itertools import chain
from typing import BinaryIO

from backstop.core.listen import cannot_listen
from backstop.core.netaddr import split_host_port
from backstop.telemetry.process_series import process_lines
from backstop.telemetry.series import CONTENT_TYPE, REGISTRY, Registry

log = logging.getLogger(__name__)

MAX_LINE = 8192
MAX_HEADERS = 100
CLIENT_TIMEOUT_S = 10.0
REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}

Answer = tuple[int, bytes, str]
"""Status, body and content type."""


class TelemetryServer:
    """Serves /metrics and /healthz on a background thread until :meth:`stop`."""

    def __init__(
        self,
        listen: str,
        healthy: Callable[[], tuple[bool, str]],
        *,
        labels: Mapping[str, str] | None = None,
        extra: Callable[[], bytes] | None = None,
        alive: Callable[[], tuple[bool, str]] | None = None,
        registry: Registry = REGISTRY,
    ) -> None:
        """Bind ``listen`` now; :class:`InvalidInput` naming the address when that fails.

        ``labels`` are added to every series that lacks them; ``extra()`` is exposition
        text served after the registry's; ``alive()`` answers ``/livez`` (default: the same
        as ``healthy()``, which answers ``/healthz`` and ``/readyz``)."""
        host, port = split_host_port(listen)
        self._healthy = healthy
        self._alive = alive or healthy
        self._labels = dict(labels or {})
        self._extra = extra or (lambda: b"")
        self._registry = registry
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind((host, port))
            self._listener.listen(128)
        except OSError as exc:
            self._listener.close()
            raise cannot_listen("/metrics (--metrics-listen)", listen, exc) from exc
        self._thread = threading.Thread(target=self._accept, name="telemetry-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def start(self) -> TelemetryServer:
        """Serve from now on, logging the bound port (the one to scrape when asked for port 0)."""
        self._thread.start()
        host = str(self._listener.getsockname()[0])
        log.info("metrics listening", extra={"address": f"{host}:{self.port}", "port": self.port})
        return self

    def stop(self) -> None:
        """Stop accepting (answers under way finish on their own threads)."""
        with contextlib.suppress(OSError):  # never started: not listening for accept()
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._listener.close()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def answer(self, path: str) -> Answer:
        """What a GET of ``path`` (its query left out) is answered with."""
        if path == "/metrics":
            lines = chain(self._registry.lines(self._labels), process_lines(self._labels))
            return 200, "".join(lines).encode() + self._extra(), CONTENT_TYPE
        if path in ("/healthz", "/readyz", "/livez"):
            ok, text = self._alive() if path == "/livez" else self._healthy()
            return 200 if ok else 503, (text + "\n").encode(), "text/plain"
        return 404, b"not found: try /metrics, /healthz, /readyz or /livez\n", "text/plain"

    def _accept(self) -> None:
        """Accept until :meth:`stop`, blocked in ``accept()`` between connections (no
        polling: an idle endpoint costs no wake-ups), each connection on a thread of its own."""
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # stopped
            threading.Thread(
                target=_exchange, args=(conn, self.answer), name="telemetry-answer", daemon=True
            ).start()


def _exchange(conn: socket.socket, answer: Callable[[str], Answer]) -> None:
    """Read one request from ``conn``, answer it, close."""
    with conn:
        conn.settimeout(CLIENT_TIMEOUT_S)
        try:
            request = _read_request(conn.makefile("rb"))
            if request is None:
                _send(conn, 400, b"bad request\n", "text/plain")
                return
            method, target = request
            if method not in ("GET", "HEAD"):
                _send(conn, 405, b"only GET and HEAD\n", "text/plain", ("Allow", "GET, HEAD"))
                return
            status, body, ctype = answer(target.split("?", 1)[0])
            _send(conn, status, b"" if method == "HEAD" else body, ctype, length=len(body))
        except OSError:  # timed out, reset, or gone before the answer
            log.debug("telemetry request failed", exc_info=True)


def _read_request(rfile: BinaryIO) -> tuple[str, str] | None:
    """(method, target) of a well-formed request whose headers were all read, else None."""
    line = rfile.readline(MAX_LINE + 1)
    parts = line.decode("latin-1").split()
    if len(line) > MAX_LINE or len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return None
    for _ in range(MAX_HEADERS):
        header = rfile.readline(MAX_LINE + 1)
        if len(header) > MAX_LINE or not header:
            return None
        if header in (b"\r\n", b"\n"):
            return parts[0], parts[1]
    return None


def _send(
    conn: socket.socket,
    status: int,
    body: bytes,
    content_type: str,
    *headers: tuple[str, str],
    length: int | None = None,
) -> None:
    head = [
        f"HTTP/1.1 {status} {REASONS[status]}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body) if length is None else length}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers),
    ]
    conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
