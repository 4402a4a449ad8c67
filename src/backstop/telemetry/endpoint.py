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

import logging
import socket
import socketserver
import threading
from collections.abc import Callable, Mapping
from itertools import chain

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
        try:
            self._server = _Server((host, port), self.answer)
        except OSError as exc:
            raise cannot_listen("/metrics (--metrics-listen)", listen, exc) from exc
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="telemetry-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> TelemetryServer:
        """Serve from now on, logging the bound port (the one to scrape when asked for port 0)."""
        self._thread.start()
        host = str(self._server.server_address[0])
        log.info("metrics listening", extra={"address": f"{host}:{self.port}", "port": self.port})
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever, forever if never run
            self._server.shutdown()
        self._server.server_close()

    def answer(self, path: str) -> Answer:
        """What a GET of ``path`` (its query left out) is answered with."""
        if path == "/metrics":
            lines = chain(self._registry.lines(self._labels), process_lines(self._labels))
            return 200, "".join(lines).encode() + self._extra(), CONTENT_TYPE
        if path in ("/healthz", "/readyz", "/livez"):
            ok, text = self._alive() if path == "/livez" else self._healthy()
            return 200 if ok else 503, (text + "\n").encode(), "text/plain"
        return 404, b"not found: try /metrics, /healthz, /readyz or /livez\n", "text/plain"


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address: tuple[str, int], answer: Callable[[str], Answer]) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.answer = answer
        super().__init__(address, _Exchange)

    def handle_error(self, request: object, client_address: object) -> None:
        log.debug("telemetry request failed", exc_info=True)


class _Exchange(socketserver.StreamRequestHandler):
    """One request read and answered."""

    timeout = CLIENT_TIMEOUT_S
    server: _Server

    def handle(self) -> None:
        try:
            request = self._read_request()
        except (TimeoutError, ConnectionError):
            return
        if request is None:
            self._send(400, b"bad request\n", "text/plain")
            return
        method, target = request
        if method not in ("GET", "HEAD"):
            self._send(405, b"only GET and HEAD\n", "text/plain", ("Allow", "GET, HEAD"))
            return
        status, body, ctype = self.server.answer(target.split("?", 1)[0])
        self._send(status, b"" if method == "HEAD" else body, ctype, length=len(body))

    def _read_request(self) -> tuple[str, str] | None:
        """(method, target) of a well-formed request whose headers were all read, else None."""
        line = self.rfile.readline(MAX_LINE + 1)
        parts = line.decode("latin-1").split()
        if len(line) > MAX_LINE or len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return None
        for _ in range(MAX_HEADERS):
            header = self.rfile.readline(MAX_LINE + 1)
            if len(header) > MAX_LINE or not header:
                return None
            if header in (b"\r\n", b"\n"):
                return parts[0], parts[1]
        return None

    def _send(
        self,
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
        try:
            self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        except (TimeoutError, ConnectionError):
            return
