"""The systemd notify protocol, spoken by the daemons of ``Type=notify`` units.

This module owns the datagrams a daemon sends to the service manager: ``READY=1`` once it
serves, ``STATUS=`` lines saying what it is doing, ``WATCHDOG=1`` pings at half of
``$WATCHDOG_USEC`` and ``STOPPING=1`` at shutdown. Each is one ``AF_UNIX`` ``SOCK_DGRAM``
datagram to ``$NOTIFY_SOCKET`` (a path, or an abstract name written with a leading ``@``).
The pings come from a task on the daemon's own event loop, so a loop that is stuck stops them
and the service manager restarts the daemon. Without ``$NOTIFY_SOCKET`` everything here does
nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

log = logging.getLogger(__name__)

STATUS_CHECK_S = 1.0
"""Without a watchdog, how often a changed status is looked for."""


class Notifier:
    """Datagrams to the service manager's socket; every method is a no-op without one."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_s = _watchdog_interval(env)
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` lines as one datagram; whether it was sent."""
        if self.address is None:
            return False
        data = "\n".join(assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(data, self.address)
        except OSError as exc:
            if not self._warned:  # once: a daemon keeps working without its service manager
                log.warning("cannot notify the service manager", extra={"error": str(exc)})
                self._warned = True
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", _status(status))

    def stopping(self, status: str) -> bool:
        return self.send("STOPPING=1", _status(status))

    async def keep_alive(self, status: Callable[[], str]) -> None:
        """Ping the watchdog (when one is asked for) and send the status each time it changes,
        until cancelled."""
        if self.address is None:
            return
        period = self.watchdog_s / 2 if self.watchdog_s else STATUS_CHECK_S
        last = status()
        while True:
            await asyncio.sleep(period)
            lines = ["WATCHDOG=1"] if self.watchdog_s else []
            now = status()
            if now != last:
                lines.append(_status(now))
                last = now
            if lines:
                self.send(*lines)


@contextlib.asynccontextmanager
async def serving(
    status: Callable[[], str],
    ready_after: Callable[[], Awaitable[object]] | None = None,
    within_s: float = 0.0,
    notifier: Notifier | None = None,
) -> AsyncIterator[None]:
    """While the block runs: tell the service manager the daemon serves (``READY=1`` with
    ``status()``), at once or once ``ready_after()`` is done (``within_s`` at most), then keep
    the watchdog fed and the status current."""
    notifier = notifier or Notifier()

    async def announce() -> None:
        if ready_after is not None:
            with contextlib.suppress(TimeoutError):  # ready all the same: STATUS says why
                await asyncio.wait_for(ready_after(), within_s)
        notifier.ready(status())
        await notifier.keep_alive(status)

    task = asyncio.create_task(announce(), name="sd-notify")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _status(text: str) -> str:
    return "STATUS=" + " ".join(text.split())  # one line: a newline would end the assignment


def _socket_address(value: str) -> str | None:
    if not value:
        return None
    if value.startswith("@"):  # an abstract name: a leading NUL byte instead of the '@'
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    log.warning("NOTIFY_SOCKET is neither a path nor an abstract name: ignored")
    return None


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Seconds between the pings systemd expects at the latest, or None without a watchdog
    for this process."""
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (a parent that started this one)
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1_000_000 if usec > 0 else None
