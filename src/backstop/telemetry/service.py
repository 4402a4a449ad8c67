"""Running one daemon until SIGINT or SIGTERM stops it, and saying so.

This module owns the end of a daemon's life: the signal handlers that cancel its main
coroutine, ``STOPPING=1`` to the service manager as soon as a signal arrives, and the last log
line, which says what stopped and why (the signal's name, the error that ended it, or that its
work finished by itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine
from typing import Any

from backstop.telemetry.sd_notify import Notifier

log = logging.getLogger(__name__)


def run_until_signal(main: Coroutine[Any, Any, None], what: str) -> int:
    """Run ``main`` (the daemon called ``what``) until it returns or a signal stops it."""
    received: list[str] = []

    async def runner() -> None:
        task = asyncio.ensure_future(main)
        loop = asyncio.get_running_loop()
        notifier = Notifier()

        def on_signal(sig: signal.Signals) -> None:
            if not received:
                notifier.stopping(f"stopping on {sig.name}")
            received.append(sig.name)
            task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    try:
        asyncio.run(runner())
    except BaseException as exc:
        why = {"daemon": what, "why": type(exc).__name__, "error": str(exc)}
        log.error("stopped", extra=why)  # noqa: TRY400 - the CLI reports the error itself
        raise
    if received:
        log.info("stopped", extra={"daemon": what, "why": "signal", "signal": received[0]})
    else:
        log.info("stopped", extra={"daemon": what, "why": "finished"})
    return 0
