"""Watchers of corrections: each gets the correction now, then each change, until it is final.

Changes are coalesced to one snapshot per ``PUBLISH_INTERVAL_S`` (a correction to thousands of
nodes changes thousands of times); a final state goes out at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from backstop.core.models import Correction

PUBLISH_INTERVAL_S = 0.05


class Watchers:
    def __init__(self, get: Callable[[str], Correction]) -> None:
        self._get = get
        self._pending: set[str] = set()
        self._queues: dict[str, set[asyncio.Queue[Correction]]] = {}

    def publish(self, correction_id: str, *, now: bool = False) -> None:
        """Send watchers the correction's state; coalesced to one snapshot per interval."""
        if not self._queues.get(correction_id):
            return
        if now:
            self._publish_now(correction_id)
            return
        if correction_id in self._pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._publish_now(correction_id)
            return
        self._pending.add(correction_id)
        loop.call_later(PUBLISH_INTERVAL_S, self._publish_now, correction_id)

    def _publish_now(self, correction_id: str) -> None:
        self._pending.discard(correction_id)
        queues = self._queues.get(correction_id)
        if not queues:
            return
        snapshot = self._get(correction_id)
        for queue in queues:
            queue.put_nowait(snapshot)

    async def watch(self, correction_id: str) -> AsyncIterator[Correction]:
        """The correction now, then each change, until it is terminal."""
        queue: asyncio.Queue[Correction] = asyncio.Queue()
        self._queues.setdefault(correction_id, set()).add(queue)
        try:
            current = self._get(correction_id)
            yield current
            while not current.state.terminal:
                current = await queue.get()
                yield current
        finally:
            watchers = self._queues.get(correction_id)
            if watchers is not None:
                watchers.discard(queue)
                if not watchers:
                    del self._queues[correction_id]
