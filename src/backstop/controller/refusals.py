"""Refusals, audited once per actor, class and window instead of once per attempt.

A caller that keeps retrying something refused (a revoked certificate reconnecting, a script
without the role) must not be able to flood the audit chain. :class:`RefusalLog` keys each
refusal by ``(actor, action, refusal class)``: the first refusal of a key is written at once
(before the refusal takes effect), the ones that follow within ``window_s`` are only counted,
and the count goes into the chain as one entry (``details.count``, with the window's first
and last times and up to :data:`MAX_SAMPLES` peers and subjects):

- when the window ends (:meth:`flush_due`, from the controller's housekeeping);
- before the next entry that actor earns by being let in (:meth:`settle`), so the chain keeps
  an actor's refusals before what they did next;
- on shutdown (:meth:`flush_all`);
- when more than ``max_keys`` keys are open: the oldest is written out and forgotten.

The ``count`` fields of a key's entries add up to its attempts. A controller that crashes loses
the counts of its open windows (at most ``window_s`` of them); the first refusal of every
window is always in the chain.

The actor is the identity the caller's certificate names (see :func:`actor_of`), never its
address; the address goes into ``details.peer``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from backstop.security.tls import peer_identity_from_context

log = logging.getLogger(__name__)

WINDOW_S = 60.0
MAX_KEYS = 4096
MAX_SAMPLES = 8
"""Distinct peers and subjects kept per window, to show where the attempts came from."""

AuditSink = Callable[..., None]
"""``audit(actor, action, subject, **details)``: appends to the chain (the engine's audit)."""


def actor_of(context: Any, fallback: str = "") -> str:
    """Who a call is from: the name its verified client certificate carries; else (open mode,
    no certificate) ``fallback`` (a claimed name) or ``unknown``."""
    peer = peer_identity_from_context(context)
    if peer is not None:
        return peer.name
    return fallback or "unknown"


def peer_of(context: Any) -> str:
    """The caller's address (for ``details.peer``), as gRPC gives it."""
    return str(context.peer())


@dataclass
class _Window:
    started: float
    subject: str
    reason: str
    count: int = 0
    """Refusals after the first, not yet written."""
    first_s: float = 0.0
    last_s: float = 0.0
    peers: list[str] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)

    def add(self, now: float, subject: str, reason: str, peer: str) -> None:
        if self.count == 0:
            self.first_s = now
        self.count += 1
        self.last_s = now
        self.reason = reason
        if peer and peer not in self.peers and len(self.peers) < MAX_SAMPLES:
            self.peers.append(peer)
        if subject not in self.subjects and len(self.subjects) < MAX_SAMPLES:
            self.subjects.append(subject)


class RefusalLog:
    """Aggregates refusals into the audit chain (see the module doc). Thread-safe."""

    def __init__(
        self,
        audit: AuditSink,
        *,
        window_s: float = WINDOW_S,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._audit = audit
        self._window_s = window_s
        self._max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._open: dict[tuple[str, str, str], _Window] = {}
        self._actors: dict[str, int] = {}
        """Open windows per actor, so that :meth:`settle` costs nothing for most callers."""

    def refuse(
        self,
        actor: str,
        action: str,
        subject: str,
        *,
        refusal: str,
        reason: str,
        peer: str = "",
        **details: object,
    ) -> None:
        """Record one refusal of ``actor`` (class ``refusal``; ``reason`` says what to do)."""
        key = (actor, action, refusal)
        now = self._clock()
        with self._lock:
            window = self._open.get(key)
            if window is not None and now - window.started < self._window_s:
                window.add(now, subject, reason, peer)
                return
            if window is not None:
                self._close(key)
            while len(self._open) >= self._max_keys:
                self._close(next(iter(self._open)))
            extra = {"peer": peer} if peer else {}
            self._audit(
                actor,
                action,
                subject,
                refusal=refusal,
                reason=reason,
                count=1,
                **extra,
                **details,
            )
            self._open[key] = _Window(started=now, subject=subject, reason=reason)
            self._actors[actor] = self._actors.get(actor, 0) + 1

    def settle(self, actor: str) -> None:
        """Write ``actor``'s counted refusals now, before an entry of another kind of theirs."""
        with self._lock:
            if actor not in self._actors:
                return
            for key in [k for k in self._open if k[0] == actor]:
                self._close(key)

    def flush_due(self) -> None:
        """Write the windows that have ended."""
        now = self._clock()
        with self._lock:
            for key in [k for k, w in self._open.items() if now - w.started >= self._window_s]:
                self._close(key)

    def flush_all(self) -> None:
        """Write every counted refusal (on shutdown)."""
        with self._lock:
            while self._open:
                self._close(next(iter(self._open)))

    @property
    def open_keys(self) -> int:
        return len(self._open)

    def _close(self, key: tuple[str, str, str]) -> None:
        """End a window (the lock is held): write its count, forget it."""
        window = self._open.pop(key)
        left = self._actors[key[0]] - 1
        if left:
            self._actors[key[0]] = left
        else:
            del self._actors[key[0]]
        self._write(key, window)

    def _write(self, key: tuple[str, str, str], window: _Window) -> None:
        if window.count == 0:
            return
        actor, action, refusal = key
        try:
            self._audit(
                actor,
                action,
                window.subjects[0] if len(window.subjects) == 1 else window.subject,
                refusal=refusal,
                reason=window.reason,
                count=window.count,
                first_s=window.first_s,
                last_s=window.last_s,
                peers=window.peers,
                subjects=window.subjects,
            )
        except Exception:  # the store failed: the count is lost, the first entry was written
            log.exception(
                "could not write aggregated refusals",
                extra={"actor": actor, "action": action, "count": window.count},
            )
