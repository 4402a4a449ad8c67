"""A stand-in model server for weights in any layout: it maps every ``*.safetensors`` file in
DIR (as serving frameworks map their shards), listens on a loopback port, writes the port to
PORT_FILE and waits. ``python -m tests.support.shard_server DIR PORT_FILE [--http]``: with
``--http`` it answers every request at once (404, as a server without a metrics page would)
instead of never answering, so an agent's serving probe costs a round trip, not its timeout."""

from __future__ import annotations

import mmap
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path


class _NotFound(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_error(404)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    directory, port_file = Path(sys.argv[1]), Path(sys.argv[2])
    held = []
    for path in sorted(directory.glob("*.safetensors")):
        fh = path.open("rb")
        held.append((fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)))
    http = HTTPServer(("127.0.0.1", 0), _NotFound) if "--http" in sys.argv[3:] else None
    listener = http.socket if http is not None else socket.create_server(("127.0.0.1", 0))
    tmp = port_file.with_name(port_file.name + ".tmp")
    tmp.write_text(str(listener.getsockname()[1]))
    tmp.replace(port_file)
    if http is not None:
        http.serve_forever()
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
