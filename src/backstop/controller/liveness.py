"""What the controller's ``/healthz`` reports: whether its store answers and its loop runs.

:class:`Liveness` owns two checks. The event loop runs :meth:`Liveness.beat` forever, stamping
the time every half second; a stamp older than :data:`LOOP_STALE_S` means the loop is stuck
(a blocking call, a runaway task) and nothing the controller does is happening. The store is
asked a cheap query (its schema version) on a worker thread with a timeout, so a hung database
is reported instead of hanging the probe; while one query is still out, later probes report it
rather than queue behind it. :meth:`Liveness.check` is called from the HTTP server's threads.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

BEAT_INTERVAL_S = 0.5
LOOP_STALE_S = 5.0
"""The loop's stamp older than this: unhealthy."""
STORE_TIMEOUT_S = 2.0
"""The store's answer to the probe query, at most this long."""


def _store_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="health-store")


@dataclass
class Liveness:
    """Health of one controller replica, as ``(healthy, reason)``."""

    store_query: Callable[[], object]
    """A cheap store query; raising or taking longer than ``store_timeout_s`` is unhealthy."""
    loop_stale_s: float = LOOP_STALE_S
    store_timeout_s: float = STORE_TIMEOUT_S
    clock: Callable[[], float] = time.monotonic
    _last_beat: float | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _pending: tuple[float, Future[object]] | None = field(default=None, init=False)
    _pool: ThreadPoolExecutor = field(default_factory=_store_pool, init=False)

    async def beat(self) -> None:
        """Stamp the time every :data:`BEAT_INTERVAL_S` until cancelled (run on the loop)."""
        while True:
            self._last_beat = self.clock()
            await asyncio.sleep(BEAT_INTERVAL_S)

    def check(self) -> tuple[bool, str]:
        """``(True, "ok")``, or ``(False, why)``: the loop first, then the store."""
        alive, why = self.check_loop()
        return self._check_store(self.clock()) if alive else (alive, why)

    def check_loop(self) -> tuple[bool, str]:
        """The loop alone (``/livez``): a store outage is no reason to restart the process."""
        if self._last_beat is None:
            return False, "event loop not running yet"
        silent = self.clock() - self._last_beat
        if silent > self.loop_stale_s:
            return False, f"event loop unresponsive for {silent:.1f} s"
        return True, "ok"

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _check_store(self, now: float) -> tuple[bool, str]:
        with self._lock:
            if self._pending is not None and not self._pending[1].done():
                since = now - self._pending[0]
                return False, f"store unreachable: a query has been waiting {since:.1f} s"
            future = self._pool.submit(self.store_query)
            self._pending = (now, future)
        try:
            future.result(timeout=self.store_timeout_s)
        except FutureTimeout:
            return False, f"store unreachable: no answer within {self.store_timeout_s:g} s"
        except Exception as exc:  # noqa: BLE001 - whatever the store raises is the reason
            return False, f"store unreachable: {exc}"
        return True, "ok"
