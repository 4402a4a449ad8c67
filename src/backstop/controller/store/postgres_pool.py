"""The PostgreSQL store's connections: a small pool of autocommit connections to one database.

It owns opening connections (with a timeout and the controller's application name), lending
them one transaction at a time, bounding how many are open and how long a caller waits, and
dropping a connection that broke; failures surface as :class:`~backstop.core.errors.StoreError`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import pq
from psycopg.rows import TupleRow

from backstop.core.errors import StoreError

Connection = psycopg.Connection[TupleRow]


class ConnectionPool:
    """Up to ``size`` autocommit connections to one database, opened on demand and reused."""

    def __init__(self, dsn: str, size: int, connect_timeout_s: int, wait_s: float) -> None:
        self._dsn = dsn
        self._size = size
        self._connect_timeout_s = connect_timeout_s
        self._wait_s = wait_s
        self._idle: list[Connection] = []
        self._opened = 0
        self._closed = False
        self._cond = threading.Condition()

    def open_connection(self) -> Connection:
        """A new autocommit connection outside the pool (the caller closes it)."""
        try:
            return psycopg.connect(
                self._dsn,
                autocommit=True,
                connect_timeout=self._connect_timeout_s,
                application_name="backstop-controller",
            )
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {exc}") from exc

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """Borrow a connection; it goes back to the pool unless it broke."""
        conn = self._checkout()
        try:
            yield conn
        finally:
            self._checkin(conn)

    def _checkout(self) -> Connection:
        deadline = time.monotonic() + self._wait_s
        with self._cond:
            while True:
                if self._closed:
                    raise StoreError("the PostgreSQL store is closed")
                if self._idle:
                    return self._idle.pop()
                if self._opened < self._size:
                    self._opened += 1
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StoreError(
                        f"all {self._size} PostgreSQL connections stayed busy for "
                        f"{self._wait_s:.0f} s"
                    )
                self._cond.wait(remaining)
        try:
            return self.open_connection()
        except BaseException:
            with self._cond:
                self._opened -= 1
                self._cond.notify()
            raise

    def _checkin(self, conn: Connection) -> None:
        reusable = (
            not conn.closed
            and not conn.broken
            and conn.info.transaction_status == pq.TransactionStatus.IDLE
        )
        with self._cond:
            if reusable and not self._closed:
                self._idle.append(conn)
            else:
                self._opened -= 1
                conn.close()
            self._cond.notify()

    def close(self) -> None:
        """Close idle connections now and borrowed ones when they come back."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._opened -= len(idle)
            self._cond.notify_all()
        for conn in idle:
            conn.close()
