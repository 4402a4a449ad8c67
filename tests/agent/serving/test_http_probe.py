"""The serving probe's HTTP: bodies framed by length, by chunks or by the close, each
bounded, against real servers on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from backstop.agent.serving.http_probe import ProbeFailed, get


@pytest.fixture
def serve() -> Iterator[Callable[[bytes], int]]:
    """A server that answers each connection with the given bytes and keeps it open."""
    listeners: list[socket.socket] = []

    def start(answer: bytes) -> int:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def loop() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                conn.recv(65536)
                conn.sendall(answer)
                threading.Timer(5.0, conn.close).start()  # kept alive, as HTTP/1.1 allows

        threading.Thread(target=loop, daemon=True).start()
        return int(listener.getsockname()[1])

    yield start
    for listener in listeners:
        listener.close()


def test_a_body_framed_by_its_length_is_read_without_waiting_for_the_close(
    serve: Callable[[bytes], int],
) -> None:
    port = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello")
    started = time.monotonic()
    assert get(port, "/metrics", timeout_s=2.0) == "hello"
    assert time.monotonic() - started < 1.0


def test_a_chunked_body_is_joined(serve: Callable[[bytes], int]) -> None:
    body = b"4\r\nvllm\r\n1;ext=1\r\n:\r\n17\r\nnum_requests_running 1\n\r\n0\r\n\r\n"
    port = serve(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    assert get(port, "/metrics", timeout_s=2.0) == "vllm:num_requests_running 1\n"


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", "answered 404"),
        (b"SSH-2.0-OpenSSH_9.2\r\n", "not an HTTP answer"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n", "more than"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "longer than"),
    ],
)
def test_an_answer_that_is_not_a_whole_200_fails_the_probe(
    serve: Callable[[bytes], int], answer: bytes, why: str
) -> None:
    port = serve(answer)
    with pytest.raises(ProbeFailed, match=why):
        get(port, "/metrics", timeout_s=0.5, max_bytes=1 << 20)
