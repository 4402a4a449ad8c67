"""Persistence of nodes, workloads, samples and corrections.

``base.Store`` is the interface; ``sqlite.SqliteStore`` is the embedded default and
``postgres.PostgresStore`` the store several controller replicas share; both are
``sql_store.SqlStore`` (the SQL they share) over a ``dialect`` and ``rows`` (the row codecs).
``open_store(url)`` picks the implementation from a URL.
"""

from __future__ import annotations

from backstop.controller.store.base import NodeRecord, PendingCommand, Store
from backstop.core.errors import InvalidInput

__all__ = ["NodeRecord", "PendingCommand", "Store", "open_store"]


def open_store(url: str) -> Store:
    """Open the store named by ``sqlite:///PATH`` (or ``sqlite://:memory:``) or by a
    PostgreSQL URL (``postgresql://USER@HOST:PORT/DB``, libpq syntax and parameters)."""
    if url.startswith("sqlite://"):
        from backstop.controller.store.sqlite import SqliteStore

        path = url.removeprefix("sqlite://")
        path = path.removeprefix("/") if path.startswith("//") else path
        return SqliteStore(path or ":memory:")
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from backstop.controller.store.postgres import PostgresStore
        except ImportError as exc:
            raise InvalidInput(
                f"the PostgreSQL store needs psycopg ({exc}): install backstop[pg], "
                "or use sqlite:///PATH"
            ) from exc
        return PostgresStore(url)
    raise InvalidInput(
        f"unknown store URL {url!r}: expected sqlite:///PATH or postgresql://HOST/DB"
    )
