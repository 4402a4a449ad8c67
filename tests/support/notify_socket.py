"""A datagram socket standing in for systemd's notify socket: what a daemon sends to it.

``NotifySocket`` binds an ``AF_UNIX`` ``SOCK_DGRAM`` socket (a path, or an abstract name) and
keeps each datagram with the monotonic time it arrived, read by a background thread.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from backstop.core.closing import ClosedOnExit
from tests.support.cluster import wait_for


@dataclass(frozen=True)
class Datagram:
    at: float
    """time.monotonic() when it arrived"""
    fields: dict[str, str]
    noted: object = None
    """what ``on_ready`` said when this was a READY=1"""


class NotifySocket(ClosedOnExit):
    """``with NotifySocket(path).start() as notify:``, then give ``notify.name`` as
    NOTIFY_SOCKET."""

    def __init__(self, path: Path | None = None, on_ready: Callable[[], object] = bool) -> None:
        self.name = str(path) if path else f"@backstop-test-{os.getpid()}-{time.monotonic_ns()}"
        self._address = "\0" + self.name[1:] if self.name.startswith("@") else self.name
        self._on_ready = on_ready
        self.received: list[Datagram] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._thread = threading.Thread(target=self._read, daemon=True)

    def start(self) -> NotifySocket:
        self._sock.bind(self._address)
        self._sock.settimeout(0.1)
        self._thread.start()
        return self

    def close(self) -> None:
        self._sock.close()
        self._thread.join(2)

    def _read(self) -> None:
        while self._sock.fileno() >= 0:
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            at = time.monotonic()
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            noted = self._on_ready() if fields.get("READY") == "1" else None
            self.received.append(Datagram(at, fields, noted))

    def with_field(self, key: str, value: str | None = None) -> list[Datagram]:
        return [
            d for d in list(self.received) if key in d.fields and value in (None, d.fields[key])
        ]

    def wait_for(self, key: str, value: str, timeout_s: float = 20) -> Datagram:
        return wait_for(lambda: next(iter(self.with_field(key, value)), None), timeout_s, key)
