"""LISTEN/NOTIFY for the PostgreSQL store: how one replica tells the others something changed.

It owns the channel and payload limits, opening a dedicated connection that LISTENs on some
channels (:func:`open_listener`), and the :class:`Listener` that reads notifications from it.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

from backstop.controller.store.postgres_pool import Connection, ConnectionPool
from backstop.core.closing import ClosedOnExit
from backstop.core.errors import InvalidInput, StoreError

MAX_CHANNEL_BYTES = 63
"""PostgreSQL truncates longer identifiers, so a longer channel name is refused."""
MAX_PAYLOAD_BYTES = 7999
"""NOTIFY payloads must be shorter than 8000 bytes."""


@dataclass(frozen=True, slots=True)
class Notification:
    """One NOTIFY as a listener receives it."""

    channel: str
    payload: str
    sender_pid: int
    """The server process of the sending connection (tells replicas apart, and self from others)."""


class Listener(ClosedOnExit):
    """A dedicated connection LISTENing on some channels; iterate it or call :meth:`get`.

    Notifications sent before :meth:`PostgresStore.listen` returned are not seen, and none are
    seen while the connection is down: after a :class:`StoreError`, open a new listener and
    re-read the state the notifications were about. One thread reads; :meth:`close` may be called
    from any thread and ends an iteration within ``wake_s``.
    """

    def __init__(self, conn: Connection, channels: Sequence[str], wake_s: float = 0.5) -> None:
        self.channels = tuple(channels)
        self._conn = conn
        self._wake_s = wake_s
        self._buffer: collections.deque[Notification] = collections.deque()
        self._lock = threading.Lock()
        self._closed = threading.Event()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed.is_set()

    def get(self, timeout_s: float) -> Notification | None:
        """The next notification, or ``None`` if none came within ``timeout_s`` (or closed)."""
        with self._lock:
            if self._buffer:
                return self._buffer.popleft()
            if self._closed.is_set():
                self._conn.close()
                return None
            try:
                # Drain the generator: it may yield a whole packet's worth past ``stop_after``,
                # and closing it early would lose the rest.
                self._buffer.extend(
                    Notification(n.channel, n.payload, n.pid)
                    for n in self._conn.notifies(timeout=timeout_s, stop_after=1)
                )
            except psycopg.Error as exc:
                self._conn.close()
                if self._closed.is_set():
                    return None
                raise StoreError(f"listening on {', '.join(self.channels)} failed: {exc}") from exc
            if self._closed.is_set():
                self._conn.close()
            return self._buffer.popleft() if self._buffer else None

    def __iter__(self) -> Iterator[Notification]:
        """Notifications as they come, until :meth:`close`."""
        while not self._closed.is_set():
            note = self.get(self._wake_s)
            if note is not None:
                yield note

    def close(self) -> None:
        """Stop listening and close the connection (now, or when a running ``get`` returns)."""
        self._closed.set()
        if self._lock.acquire(blocking=False):
            try:
                self._conn.close()
            finally:
                self._lock.release()


def check_channel(channel: str) -> None:
    """Refuse a channel name PostgreSQL would truncate (or an empty one)."""
    if not channel or len(channel.encode()) > MAX_CHANNEL_BYTES:
        raise InvalidInput(f"channel name must be 1 to {MAX_CHANNEL_BYTES} bytes: {channel!r}")


def check_payload(payload: str) -> None:
    """Refuse a payload NOTIFY would reject."""
    if len(payload.encode()) > MAX_PAYLOAD_BYTES:
        raise InvalidInput(f"notification payload over {MAX_PAYLOAD_BYTES} bytes")


def open_listener(pool: ConnectionPool, channels: Sequence[str], wake_s: float) -> Listener:
    """A :class:`Listener` on its own connection, already LISTENing on ``channels``."""
    if not channels:
        raise InvalidInput("listen needs at least one channel")
    for channel in channels:
        check_channel(channel)
    conn = pool.open_connection()
    try:
        for channel in channels:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
    except psycopg.Error as exc:
        conn.close()
        raise StoreError(f"cannot listen on {', '.join(channels)}: {exc}") from exc
    return Listener(conn, channels, wake_s)
