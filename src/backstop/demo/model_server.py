"""A small but real model server for the demo and the tests.

It writes a safetensors weights file, maps it into memory (as serving frameworks do), starts a
worker child process, and answers HTTP requests on a loopback port with a completion computed
from the mapped weights. Like vLLM it serves Prometheus metrics on the same port, under vLLM's
own names (``vllm:generation_tokens_total`` and the rest), so the agent reads its tokens/s
the way it reads a real server's. ``python -m backstop.demo.model_server --port 0
--ready-file F``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import mmap
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

MODEL_NAME = "backstop-demo-tiny"
VOCAB = ("the", "model", "is", "paused", "serving", "tokens", "safely", "now", "compute", "gpu")


def command(weights_dir: Path, ready_file: Path, port: int = 0) -> list[str]:
    """The command line that starts a model server (used by the demo and the tests)."""
    return [
        sys.executable,
        "-m",
        "backstop.demo.model_server",
        "--port",
        str(port),
        "--dir",
        str(weights_dir),
        "--ready-file",
        str(ready_file),
    ]


def write_weights(path: Path, rows: int = 256, cols: int = 64, seed: int = 7) -> None:
    """Write a float32 ``embed`` tensor in safetensors format (8-byte header length + JSON)."""
    data = bytearray()
    value = seed
    for _ in range(rows * cols):
        value = (value * 1103515245 + 12345) % 2**31
        data += struct.pack("<f", (value % 1000) / 1000.0)
    header = {
        "__metadata__": {"format": "pt", "name": MODEL_NAME},
        "embed": {"dtype": "F32", "shape": [rows, cols], "data_offsets": [0, len(data)]},
    }
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(data))


def write_config(path: Path) -> None:
    """The Hugging Face ``config.json`` that sits beside the weights (what the model is)."""
    config = {
        "architectures": ["BackstopDemoForCausalLM"],
        "model_type": "backstop-demo",
        "_name_or_path": MODEL_NAME,
        "hidden_size": 64,
        "vocab_size": 256,
        "max_position_embeddings": 2048,
    }
    path.write_text(json.dumps(config, indent=2) + "\n")


class Model:
    def __init__(self, path: Path) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - kept open: the mapping must stay visible
        self.weights = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        (header_len,) = struct.unpack("<Q", self.weights[:8])
        self.offset = 8 + header_len

    def complete(self, prompt: str, tokens: int = 6) -> str:
        digest = hashlib.sha256(prompt.encode()).digest()
        words = []
        for i in range(tokens):
            pos = self.offset + (digest[i] * 4 * 64 + i * 4) % (len(self.weights) - self.offset - 4)
            (value,) = struct.unpack("<f", self.weights[pos : pos + 4])
            words.append(VOCAB[int(value * 1000) % len(VOCAB)])
        return " ".join(words)


class ServingMetrics:
    """The counters and gauges vLLM exports, under its names, in a registry of their own
    (written by the official client, as vLLM's are, ``*_created`` series and all)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["model_name"]
        counter = Counter(
            "vllm:generation_tokens", "Generated tokens", labels, registry=self.registry
        )
        self.generated = counter.labels(MODEL_NAME)
        counter = Counter("vllm:prompt_tokens", "Prompt tokens", labels, registry=self.registry)
        self.prompt = counter.labels(MODEL_NAME)
        gauge = Gauge("vllm:num_requests_running", "Running", labels, registry=self.registry)
        self.running = gauge.labels(MODEL_NAME)
        gauge = Gauge("vllm:num_requests_waiting", "Waiting", labels, registry=self.registry)
        gauge.labels(MODEL_NAME).set(0)


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that keeps no access log and answers with :meth:`reply`."""

    def reply(self, status: int, body: bytes) -> None:
        """Send ``body`` whole, with its length."""
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


def _handler(model: Model, served: ServingMetrics) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path == "/healthz":
                body = b"ok\n"
            elif url.path == "/metrics":
                body = generate_latest(served.registry)
            elif url.path == "/generate":
                prompt = parse_qs(url.query).get("prompt", [""])[0]
                with served.running.track_inprogress():
                    completion = model.complete(prompt)
                served.prompt.inc(len(prompt.split()))
                served.generated.inc(len(completion.split()))
                body = json.dumps({"completion": completion}).encode() + b"\n"
            else:
                self.send_error(404, "try /generate?prompt=..., /metrics or /healthz")
                return
            self.reply(200, body)

    return Handler


def _worker() -> None:
    """The child process: a stand-in for a tokenizer or engine worker."""
    while True:
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--dir", default="", help="where to write the weights (default: a new temp dir)"
    )
    parser.add_argument("--ready-file", default="")
    parser.add_argument("--worker", action="store_true", help="internal: run as the worker child")
    args = parser.parse_args(argv)
    if args.worker:
        _worker()
        return 0
    directory = (
        Path(args.dir)
        if args.dir
        else Path(tempfile.gettempdir()) / f"backstop-model-{os.getpid()}"
    )
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / "model.safetensors"
    if not weights.exists():
        write_weights(weights)
        write_config(directory / "config.json")
    model = Model(weights)
    worker = subprocess.Popen([sys.executable, "-m", "backstop.demo.model_server", "--worker"])
    server = ThreadingHTTPServer(("127.0.0.1", args.port), _handler(model, ServingMetrics()))

    def on_term(*_: object) -> None:
        worker.terminate()
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    if args.ready_file:
        tmp = Path(args.ready_file + ".tmp")
        tmp.write_text(str(server.server_address[1]))
        tmp.replace(args.ready_file)
    try:
        server.serve_forever()
    finally:
        worker.terminate()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
