"""The names of Corrections waiting to be reconciled, each at most once.

Watch events, the periodic resync and controller commands all add names; one worker takes
them one at a time, so two reconciles never race on the same objects (the Tetragon rule: all
enforcement through one queue). A name added while it is being reconciled runs once more after.
Runs on the event loop; other threads add through ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio


class WorkQueue:
    """A de-duplicating FIFO of names, with delayed re-adds for retries."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._active: set[str] = set()
        self._again: set[str] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def __len__(self) -> int:
        return len(self._queued)

    def add(self, name: str) -> None:
        """Reconcile ``name`` soon (once, however often it is added before it runs)."""
        if name in self._active:
            self._again.add(name)
        elif name not in self._queued:
            self._queued.add(name)
            self._queue.put_nowait(name)

    def add_after(self, name: str, delay_s: float) -> None:
        """Reconcile ``name`` in ``delay_s`` (an earlier pending retry wins)."""
        loop = asyncio.get_running_loop()
        pending = self._timers.get(name)
        if pending is not None and pending.when() <= loop.time() + delay_s:
            return
        if pending is not None:
            pending.cancel()

        def fire() -> None:
            self._timers.pop(name, None)
            self.add(name)

        self._timers[name] = loop.call_later(delay_s, fire)

    async def get(self) -> str:
        """The next name; it is active until :meth:`done`."""
        name = await self._queue.get()
        self._queued.discard(name)
        self._active.add(name)
        return name

    def done(self, name: str) -> None:
        """``name``'s reconcile finished; run it again if it was added meanwhile."""
        self._active.discard(name)
        if name in self._again:
            self._again.discard(name)
            self.add(name)

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
