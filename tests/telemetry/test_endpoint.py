"""The telemetry endpoint's HTTP, spoken to over real sockets: what scrapers and probes get,
and what a malformed, oversized or silent client gets (nothing that stops the others)."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from backstop.core.errors import InvalidInput
from backstop.telemetry.endpoint import MAX_LINE, TelemetryServer
from backstop.telemetry.series import Gauge, Registry

HEALTH = {"ok": True}
"""What the served health check answers (each test starts healthy)."""


@pytest.fixture
def server() -> Iterator[TelemetryServer]:
    registry = Registry()
    Gauge("backstop_x_up", "Up", registry=registry).set(1)
    HEALTH["ok"] = True
    served = TelemetryServer(
        "127.0.0.1:0",
        lambda: (HEALTH["ok"], "ok" if HEALTH["ok"] else "not connected"),
        labels={"node": "node-a"},
        extra=lambda: b"# TYPE DCGM_FI_DEV_GPU_UTIL gauge\nDCGM_FI_DEV_GPU_UTIL 7\n",
        registry=registry,
    ).start()
    yield served
    served.stop()


def exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
        return answer


def test_metrics_are_the_registry_the_process_and_the_extra_text(server: TelemetryServer) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics?x=1", timeout=5) as r:
        assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        families = {f.name: f for f in text_string_to_metric_families(r.read().decode())}

    assert families["backstop_x_up"].samples[0].labels == {"node": "node-a"}
    assert families["process_resident_memory_bytes"].samples[0].value > 0
    assert families["DCGM_FI_DEV_GPU_UTIL"].samples[0].labels == {}


def test_health_answers_follow_the_check(server: TelemetryServer) -> None:
    assert exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").endswith(
        b"\r\n\r\nok\n"
    )
    HEALTH["ok"] = False
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/readyz", timeout=5)
    assert (refused.value.code, refused.value.read()) == (503, b"not connected\n")


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /nothing HTTP/1.1\r\n\r\n", b"404"),
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", b"405"),
        (b"hello\r\n\r\n", b"400"),
        (b"GET /metrics\r\n\r\n", b"400"),
        (b"GET /" + b"a" * MAX_LINE + b" HTTP/1.1\r\n\r\n", b"400"),
        (b"GET /metrics HTTP/1.1\r\n" + b"X-A: b\r\n" * 200 + b"\r\n", b"400"),
    ],
)
def test_requests_other_than_a_get_of_a_known_path_are_refused(
    server: TelemetryServer, request_bytes: bytes, status: bytes
) -> None:
    answer = exchange(server.port, request_bytes)

    assert answer.split(b" ")[1] == status
    assert b"Connection: close" in answer


def test_head_answers_the_length_without_the_body(server: TelemetryServer) -> None:
    head, _, body = exchange(server.port, b"HEAD /healthz HTTP/1.1\r\n\r\n").partition(b"\r\n\r\n")

    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"Content-Length: 3" in head
    assert body == b""


def test_a_silent_client_does_not_hold_up_a_scrape(server: TelemetryServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as silent:
        silent.sendall(b"GET /metr")
        started = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as r:
            assert r.status == 200
        assert time.monotonic() - started < 2.0


def test_stop_closes_the_port_whether_or_not_it_was_started() -> None:
    started = TelemetryServer("127.0.0.1:0", lambda: (True, "ok")).start()
    never = TelemetryServer("127.0.0.1:0", lambda: (True, "ok"))
    ports = (started.port, never.port)
    began = time.monotonic()
    started.stop()
    never.stop()

    assert time.monotonic() - began < 1.0
    for port in ports:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_busy_port_is_refused_with_the_address() -> None:
    first = TelemetryServer("127.0.0.1:0", lambda: (True, "ok"))
    try:
        with pytest.raises(InvalidInput, match=f"127.0.0.1:{first.port}"):
            TelemetryServer(f"127.0.0.1:{first.port}", lambda: (True, "ok"))
    finally:
        first.stop()
