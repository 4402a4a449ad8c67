"""A small HTTP endpoint serving Prometheus ``/metrics`` and a ``/healthz`` check.

``/metrics`` is the process's default registry, each series given the server's own labels
where it has none of that name (the agent's ``node``, so its series say which node they
are from however they are scraped), followed by any extra exposition text (the agent's
DCGM-compatible series).
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from backstop.core.listen import cannot_listen
from backstop.core.netaddr import split_host_port

log = logging.getLogger(__name__)


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that keeps no access log and answers with :meth:`reply`."""

    def reply(self, status: int, body: bytes, content_type: str = "") -> None:
        """Send ``body`` whole, with its length (and ``content_type`` when given)."""
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


class TelemetryServer:
    """Serves /metrics and /healthz on a background thread until :meth:`stop`."""

    def __init__(
        self,
        listen: str,
        healthy: Callable[[], tuple[bool, str]],
        labels: Mapping[str, str] | None = None,
        extra: Callable[[], bytes] | None = None,
        alive: Callable[[], tuple[bool, str]] | None = None,
    ) -> None:
        """Bind ``listen`` now; :class:`InvalidInput` naming the address when that fails.

        ``labels`` are added to every series that lacks them; ``extra()`` is exposition
        text served after the registry's; ``alive()`` answers ``/livez`` (default: the same
        as ``healthy()``, which answers ``/healthz`` and ``/readyz``)."""
        host, port = split_host_port(listen)
        handler = _handler(
            healthy, alive or healthy, _Labelled(labels or {}), extra or (lambda: b"")
        )
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise cannot_listen("/metrics (--metrics-listen)", listen, exc) from exc
        self._server.daemon_threads = True
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


class _Labelled(Collector):
    """The default registry's metrics, each sample given ``labels`` it does not have."""

    def __init__(self, labels: Mapping[str, str]) -> None:
        self._labels = dict(labels)

    def collect(self) -> Iterator[Metric]:
        for metric in REGISTRY.collect():
            if not self._labels:
                yield metric
                continue
            labelled = copy.copy(metric)
            labelled.samples = [
                s._replace(labels={**self._labels, **s.labels}) for s in metric.samples
            ]
            yield labelled


def _handler(
    healthy: Callable[[], tuple[bool, str]],
    alive: Callable[[], tuple[bool, str]],
    registry: Collector,
    extra: Callable[[], bytes],
) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/metrics":
                body = generate_latest(registry) + extra()
                status, ctype = 200, CONTENT_TYPE_LATEST
            elif self.path.split("?")[0] in ("/healthz", "/readyz", "/livez"):
                ok, text = alive() if self.path.split("?")[0] == "/livez" else healthy()
                body, status, ctype = (text + "\n").encode(), 200 if ok else 503, "text/plain"
            else:
                body, status, ctype = (
                    b"not found: try /metrics, /healthz, /readyz or /livez\n",
                    404,
                    "text/plain",
                )
            self.reply(status, body, ctype)

    return Handler
