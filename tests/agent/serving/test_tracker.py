"""Serving telemetry read from real HTTP servers built on prometheus_client, exposing the
exact metric names of vLLM and TGI with counters that move while the agent reads them."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from backstop.agent.serving.http_probe import ProbeFailed, get
from backstop.agent.serving.tracker import ServingTracker

GENERATED_PER_S = 400.0
PROMPT_PER_S = 150.0


class MovingServer:
    """Counters that grow at a known rate in real time, served on a real port."""

    def __init__(self, registry: CollectorRegistry, generated: object, prompt: object) -> None:
        self.server, self._thread = start_http_server(0, addr="127.0.0.1", registry=registry)
        self.port = int(self.server.server_address[1])
        self._generated, self._prompt = generated, prompt
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(0.005):
            now = time.monotonic()
            self._generated(GENERATED_PER_S * (now - last))  # type: ignore[operator]
            self._prompt(PROMPT_PER_S * (now - last))  # type: ignore[operator]
            last = now

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def vllm() -> Iterator[MovingServer]:
    registry = CollectorRegistry()
    labels = ["model_name"]
    generated = Counter("vllm:generation_tokens", "tokens", labels, registry=registry)
    prompt = Counter("vllm:prompt_tokens", "tokens", labels, registry=registry)
    Gauge("vllm:num_requests_running", "running", labels, registry=registry).labels(
        "meta-llama/Llama-3.1-8B"
    ).set(3)
    Gauge("vllm:num_requests_waiting", "waiting", labels, registry=registry).labels(
        "meta-llama/Llama-3.1-8B"
    ).set(1)
    served = MovingServer(
        registry,
        generated.labels("meta-llama/Llama-3.1-8B").inc,
        prompt.labels("meta-llama/Llama-3.1-8B").inc,
    )
    yield served
    served.close()


@pytest.fixture
def tgi() -> Iterator[MovingServer]:
    registry = CollectorRegistry()
    generated = Histogram("tgi_request_generated_tokens", "tokens", registry=registry)
    prompt = Histogram("tgi_request_input_length", "tokens", registry=registry)
    Gauge("tgi_queue_size", "queue", registry=registry).set(2)
    Gauge("tgi_batch_current_size", "batch", registry=registry).set(5)
    served = MovingServer(registry, generated.observe, prompt.observe)
    yield served
    served.close()


def _rates(tracker: ServingTracker, port: int, readings: int = 3, gap_s: float = 2.0) -> list:
    stats = []
    for _ in range(readings):
        stats.append(tracker.stats("w1", 0, [port], time.monotonic()))
        time.sleep(gap_s)
    return stats


def test_vllm_tokens_per_second_within_ten_percent_of_the_truth(vllm: MovingServer) -> None:
    tracker = ServingTracker(interval_s=1.0)
    first, *later = _rates(tracker, vllm.port)
    assert first is not None
    assert first.server == "vllm"
    assert first.generated_tokens_per_s is None  # one reading: no rate yet, not zero
    for stats in later:
        assert stats.model_name == "meta-llama/Llama-3.1-8B"
        assert stats.port == vllm.port
        assert stats.generated_tokens_per_s == pytest.approx(GENERATED_PER_S, rel=0.10)
        assert stats.prompt_tokens_per_s == pytest.approx(PROMPT_PER_S, rel=0.10)
        assert (stats.requests_running, stats.requests_waiting) == (3.0, 1.0)


def test_tgi_tokens_per_second_from_its_histogram_sums(tgi: MovingServer) -> None:
    tracker = ServingTracker(interval_s=1.0)
    _, *later = _rates(tracker, tgi.port)
    for stats in later:
        assert stats.server == "tgi"
        assert stats.generated_tokens_per_s == pytest.approx(GENERATED_PER_S, rel=0.10)
        assert stats.prompt_tokens_per_s == pytest.approx(PROMPT_PER_S, rel=0.10)
        assert (stats.requests_running, stats.requests_waiting) == (5.0, 2.0)


def test_reads_at_most_once_per_interval(vllm: MovingServer) -> None:
    tracker = ServingTracker(interval_s=5.0)
    for offset in (0.0, 1.0, 4.9):
        tracker.stats("w1", 0, [vllm.port], 100.0 + offset)
    assert tracker.reads == 1
    tracker.stats("w1", 0, [vllm.port], 105.0)
    assert tracker.reads == 2


def test_a_counter_that_went_back_gives_no_rate_not_a_negative_one() -> None:
    answers = iter(["vllm:generation_tokens_total 1000\n", "vllm:generation_tokens_total 10\n"])
    tracker = ServingTracker(interval_s=1.0, probe=lambda port, path, connect: next(answers))
    tracker.stats("w1", 0, [8000], 10.0)
    restarted = tracker.stats("w1", 0, [8000], 20.0)
    assert restarted is not None
    assert restarted.generated_tokens_per_s is None


def test_ports_are_probed_one_per_reading_and_left_alone_until_the_retry() -> None:
    asked: list[tuple[int, str]] = []

    def probe(port: int, path: str, connect: object) -> str:
        asked.append((port, path))
        raise ProbeFailed("nothing here")

    tracker = ServingTracker(interval_s=1.0, retry_s=60.0, probe=probe)
    ports = [22, 9000, 8080, 7000, 6000]
    for now in (0.0, 2.0, 4.0, 6.0, 8.0, 10.0):
        assert tracker.stats("w1", 0, ports, now) is None
    assert asked == [(p, path) for p in (22, 6000, 7000, 8080) for path in ("/metrics", "/api/ps")]
    asked.clear()
    tracker.stats("w1", 0, ports, 61.0)
    assert asked == [(22, "/metrics"), (22, "/api/ps")]  # the retry, still one port a reading


def test_a_server_that_stops_answering_costs_one_request_then_rests() -> None:
    answers = ["vllm:num_requests_running 2\n"]

    def probe(port: int, path: str, connect: object) -> str:
        if not answers:
            raise ProbeFailed("timed out")  # paused: the kernel accepts, nobody answers
        return answers.pop()

    tracker = ServingTracker(interval_s=1.0, retry_s=60.0, probe=probe)
    assert tracker.stats("w1", 0, [8000], 0.0) is not None
    assert tracker.stats("w1", 0, [8000], 2.0) is None
    reads = tracker.reads
    for now in (4.0, 6.0, 8.0):
        tracker.stats("w1", 0, [8000], now)
    assert tracker.reads == reads


class _Ollama(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path != "/api/ps":
            self.send_error(404)
            return
        body = json.dumps({"models": [{"name": "llama3.1:8b", "size_vram": 5_000_000_000}]})
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: object) -> None:
        return


def _serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_ollama_is_read_through_its_model_list() -> None:
    server = _serve(_Ollama)
    try:
        stats = ServingTracker().stats("w1", 0, [server.server_address[1]], 0.0)
        assert stats is not None
        assert (stats.server, stats.model_name) == ("ollama", "llama3.1:8b")
        assert stats.generated_tokens_per_s is None
    finally:
        server.shutdown()
        server.server_close()


class _Flood(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        chunk = b"vllm:num_requests_running 1\n" * 4096
        try:
            for _ in range(10_000):  # about 1 GiB if nobody stops reading
                self.wfile.write(chunk)
        except OSError:
            return

    def log_message(self, format: str, *args: object) -> None:
        return


class _Drip(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        try:
            for _ in range(100):
                self.wfile.write(b"#")
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            return

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.mark.parametrize(("handler", "why"), [(_Flood, "more than"), (_Drip, "longer than")])
def test_a_hostile_server_costs_bounded_bytes_and_time(
    handler: type[BaseHTTPRequestHandler], why: str
) -> None:
    server = _serve(handler)
    try:
        started = time.monotonic()
        with pytest.raises(ProbeFailed, match=why):
            get(server.server_address[1], "/metrics", timeout_s=1.0, max_bytes=1 << 20)
        assert time.monotonic() - started < 3.0
    finally:
        server.shutdown()
        server.server_close()
