"""The alert dispatcher: delivers the store's queued alert changes to their sinks, retrying.

:meth:`AlertDispatcher.drain` claims the deliveries that are due (see
:meth:`~backstop.controller.store.sql_alerts.SqlAlerts.due_deliveries`), hands each to its
sink and marks it delivered, or failed with the next attempt :func:`backoff_s` later: 1 s after
the first failure, doubling up to 5 minutes, each delay drawn between half and all of that
(jitter, so receivers coming back are not hit by every controller at once). Nothing is dropped:
a delivery stays queued until its sink takes it, across restarts (a new store on the same
database finds it), and the first failure to a sink ends that sink's turn (its other claimed
deliveries wait as long). :meth:`AlertDispatcher.run` is the controller's asyncio task: it
drains in a worker thread (sinks block on HTTP), sends open alerts again to sinks that want it
(Alertmanager), keeps the alert gauges, and sleeps until :meth:`AlertDispatcher.wake` or the
next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence

from backstop.controller import metrics
from backstop.controller.alerts.sinks import Sink
from backstop.controller.store import Store
from backstop.core.alerts import AlertDelivery, AlertState
from backstop.core.errors import BackstopError

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 300.0
POLL_S = 5.0
"""The longest the dispatcher sleeps between looks at the queue (other replicas' changes and
retries that came due)."""
BATCH = 100
OPEN_STATES = (AlertState.FIRING, AlertState.ACKNOWLEDGED)


def backoff_s(failures: int, rng: Callable[[], float] = random.random) -> float:
    """The wait before the next attempt after ``failures`` failed ones (1 or more)."""
    ceiling = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2.0 ** min(max(failures, 1) - 1, 30))
    return ceiling * (0.5 + rng() / 2)


class AlertDispatcher:
    """Delivers queued alert changes to ``sinks`` (their names are what the queue holds)."""

    def __init__(
        self,
        store: Store,
        sinks: Sequence[Sink],
        *,
        clock: Callable[[], float] = time.time,
        poll_s: float = POLL_S,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.sinks = {sink.name: sink for sink in sinks}
        self._clock = clock
        self._poll_s = poll_s
        self._rng = rng
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._resent: dict[str, float] = {}

    @property
    def sink_names(self) -> tuple[str, ...]:
        """The names a change's deliveries are queued under."""
        return tuple(self.sinks)

    def wake(self) -> None:
        """Look at the queue now (after a change was stored); safe from any thread. Before
        :meth:`run` has started it does nothing: the first turn looks anyway."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def drain(self, limit: int = BATCH) -> int:
        """Deliver what is due, once each; how many were claimed."""
        due = self.store.due_deliveries(self._clock(), limit)
        failed: dict[str, tuple[float, str]] = {}
        for delivery in due:
            self._attempt(delivery, failed)
        return len(due)

    def _attempt(self, delivery: AlertDelivery, failed: dict[str, tuple[float, str]]) -> None:
        sink = self.sinks.get(delivery.sink)
        if delivery.sink in failed:  # the sink failed this turn: wait with the one that failed
            self.store.mark_failed(delivery.delivery_id, *failed[delivery.sink])
            return
        error = ""
        if sink is None:
            error = f"no sink named {delivery.sink!r} is configured"
        else:
            try:
                sink.deliver(delivery.alert)
            except BackstopError as exc:
                error = exc.message
        if not error:
            self.store.mark_delivered(delivery.delivery_id, self._clock())
            metrics.ALERT_DELIVERIES.labels(delivery.sink).inc()
            return
        retry_at = self._clock() + backoff_s(delivery.attempts + 1, self._rng)
        failed[delivery.sink] = (retry_at, error)
        self.store.mark_failed(delivery.delivery_id, retry_at, error)
        metrics.ALERT_DELIVERIES_FAILED.labels(delivery.sink).inc()
        log.warning(
            "alert delivery failed; retrying",
            extra={
                "sink": delivery.sink,
                "alert_id": delivery.alert.alert_id,
                "attempts": delivery.attempts + 1,
                "retry_in_s": round(retry_at - self._clock(), 1),
                "error": error,
            },
        )

    def resend_open(self) -> int:
        """Send the open alerts again to each sink whose interval has passed; how many sent.
        Best effort: a failure is counted and logged, and the next interval tries again."""
        now = self._clock()
        due = [
            s
            for s in self.sinks.values()
            if s.resend_s > 0 and now - self._resent.get(s.name, 0.0) >= s.resend_s
        ]
        if not due:
            return 0
        alerts = self.store.list_alerts(OPEN_STATES, limit=0)
        sent = 0
        for sink in due:
            self._resent[sink.name] = now
            for alert in alerts:
                try:
                    sink.deliver(alert)
                except BackstopError as exc:
                    metrics.ALERT_DELIVERIES_FAILED.labels(sink.name).inc()
                    log.warning(
                        "resending open alerts failed",
                        extra={"sink": sink.name, "error": exc.message},
                    )
                    break
                sent += 1
        return sent

    def count(self) -> None:
        """Set the alert gauges from the store."""
        firing, pending = self.store.alert_backlog()
        metrics.ALERTS_FIRING.set(firing)
        metrics.ALERT_DELIVERIES_PENDING.set(pending)

    def _turn(self) -> int:
        claimed = self.drain()
        self.resend_open()
        self.count()
        return claimed

    async def run(self) -> None:
        """Deliver until cancelled."""
        self._loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            claimed = 0
            try:
                claimed = await asyncio.to_thread(self._turn)
            except Exception:
                log.exception("alert delivery failed; retrying")
            if claimed:
                continue  # more may be due: an alert's next change, or the rest of a full batch
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_s)
