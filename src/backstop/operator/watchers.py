"""Watches that make reconciles happen as soon as something changes.

One daemon thread per watched kind (Corrections, Deployments, StatefulSets), each a long-poll
``watch`` from the last resourceVersion seen. The first watch (and one after 410 Gone) starts
with no version, so the API server replays every existing object as ADDED: that is the initial
sync. A broken stream is reopened with capped backoff. Events go to a callback, which must be
quick and thread-safe (the operator hops them onto its event loop).

The periodic resync does not depend on these: a missed event delays a correction by at most
the resync interval.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from backstop.core.errors import BackstopError
from backstop.operator.kube import JsonObject, Kind, KubeApi, WatchExpired

log = logging.getLogger(__name__)

EventHandler = Callable[[str, JsonObject], None]
MAX_BACKOFF_S = 10.0


class Watcher:
    """Watches every object of one kind until :meth:`stop`."""

    def __init__(
        self, kube: KubeApi, kind: Kind, on_event: EventHandler, timeout_s: int = 30
    ) -> None:
        self.kind = kind
        self._kube = kube
        self._on_event = on_event
        self._timeout_s = timeout_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"watch-{kind.value.lower()}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end; it does at its next event or watch timeout (it is a daemon,
        so it never holds the process up)."""
        self._stopped.set()

    def _run(self) -> None:
        version = ""
        backoff = 0.2
        while not self._stopped.is_set():
            try:
                for kind, obj in self._kube.watch(self.kind, version, self._timeout_s):
                    if self._stopped.is_set():
                        return
                    version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                    if kind != "BOOKMARK":
                        self._on_event(kind, obj)
                backoff = 0.2
            except WatchExpired:
                log.info("watch expired; replaying", extra={"kind": self.kind.value})
                version = ""
            except BackstopError as exc:
                log.warning(
                    "watch failed; retrying",
                    extra={"kind": self.kind.value, "error": exc.message, "retry_s": backoff},
                )
                self._stopped.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            except Exception:
                log.exception("watch handler failed", extra={"kind": self.kind.value})
                self._stopped.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
