"""The few spellings SQLite and PostgreSQL disagree on in the queries the store shares.

A :class:`Dialect` names them (placeholders, a list parameter, the larger of two values, no
limit, and the column types the schema migrations spell differently); :data:`SQLITE` and
:data:`POSTGRES` are the two the backends use. Locking is not a
spelling: each backend writes the statements that take locks itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one database spells what the shared queries need."""

    in_list: Callable[[str, Sequence[object]], tuple[str, tuple[object, ...]]]
    """``column IN`` the values: the SQL fragment and its parameters."""
    greatest: str
    """The function giving the larger of two values (``MAX`` or ``GREATEST``)."""
    no_limit: object
    """The ``LIMIT`` parameter meaning no limit."""
    placeholders: Callable[[str], str]
    """A query written with ``?`` placeholders (as the shared ones are) in the driver's own."""
    column_types: Mapping[str, str]
    """The column types of the schema migrations, by the name the shared text gives them
    (``{bytes}``, ``{time}``, ``{int64}``, ``{flag}``, ``{row_id}``, ``{serial}``)."""


def _expanded_in(column: str, values: Sequence[object]) -> tuple[str, tuple[object, ...]]:
    return f"{column} IN ({','.join('?' * len(values))})", tuple(values)


def _array_in(column: str, values: Sequence[object]) -> tuple[str, tuple[object, ...]]:
    return f"{column} = ANY(?)", (list(values),)


def _same(query: str) -> str:
    return query


def _percent_s(query: str) -> str:
    return query.replace("?", "%s")


SQLITE = Dialect(
    in_list=_expanded_in,
    greatest="MAX",
    no_limit=-1,
    placeholders=_same,
    column_types={
        "bytes": "BLOB",
        "time": "REAL",
        "int64": "INTEGER",
        "flag": "INTEGER NOT NULL DEFAULT 0",
        "row_id": "INTEGER PRIMARY KEY",
        "serial": "INTEGER PRIMARY KEY AUTOINCREMENT",
    },
)
POSTGRES = Dialect(
    in_list=_array_in,
    greatest="GREATEST",
    no_limit=None,
    placeholders=_percent_s,
    column_types={
        "bytes": "BYTEA",
        "time": "DOUBLE PRECISION",
        "int64": "BIGINT",
        "flag": "BOOLEAN NOT NULL DEFAULT FALSE",
        "row_id": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        "serial": "BIGSERIAL PRIMARY KEY",
    },
)
