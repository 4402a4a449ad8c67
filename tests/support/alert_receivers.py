"""Real receivers for the alert sinks: an HTTP server that records webhook requests, and a
Prometheus Alertmanager process (see tests.support.prometheus_builds) on a loopback port.

:class:`Receiver` can be bound before it listens (connections to it are refused until
:meth:`Receiver.listen`) and answers the statuses queued in ``statuses`` (then 200), so tests
can play a receiver that is down, then failing, then up. :func:`run_alertmanager` starts
Alertmanager with a minimal configuration, storage under a temporary directory and clustering
off, and waits for ``/-/ready``.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support.postgres import free_port

ALERTMANAGER_CONFIG = """\
route:
  receiver: "null"
receivers:
  - name: "null"
"""


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST."""

    statuses: list[int] = field(default_factory=list)
    """Statuses to answer, first to last; 200 once they are used up."""
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.received.append(Received(self.path, dict(self.headers.items()), body))
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "http://elsewhere.invalid/hook")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self.server.server_bind()  # bound, not listening: connections are refused
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread: threading.Thread | None = None

    def listen(self) -> None:
        self.server.server_activate()
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join(5)
        self.server.server_close()


@dataclass(frozen=True)
class Alertmanager:
    url: str
    process: subprocess.Popen[bytes]

    def alerts(self) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts``: the alerts it holds as active."""
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=5) as response:  # noqa: S310
            result: list[dict[str, Any]] = json.load(response)
            return result


@contextlib.contextmanager
def run_alertmanager(binary: Path, workdir: Path) -> Iterator[Alertmanager]:
    """Alertmanager serving on a free loopback port until the block ends."""
    config = workdir / "alertmanager.yml"
    config.write_text(ALERTMANAGER_CONFIG)
    port = free_port()
    log = (workdir / "alertmanager.log").open("wb")
    process = subprocess.Popen(
        [
            str(binary),
            f"--config.file={config}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:  # noqa: S310
                    if response.status == 200:
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = (workdir / "alertmanager.log").read_text()
                    raise RuntimeError(f"Alertmanager did not become ready: {output}") from None
                time.sleep(0.1)
        yield Alertmanager(url, process)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
