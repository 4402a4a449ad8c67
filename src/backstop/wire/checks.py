"""Bounds every converted field is held to: identifiers, text lengths, counters, finite numbers;
and how optional (presence-tracked) fields are read and written.

Shared by the observation (:mod:`backstop.wire.convert`) and correction
(:mod:`backstop.wire.correction_convert`) conversions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from backstop.core.errors import InvalidInput

MAX_ID_LEN = 128
MAX_TEXT_LEN = 4096
MAX_COUNTER = 2**63 - 1
"""Sequence numbers and counters are unsigned on the wire but stored as signed 64-bit."""


def opt(msg: object, name: str) -> int | None:
    """An optional integer field, or None when unset."""
    return getattr(msg, name) if msg.HasField(name) else None  # type: ignore[attr-defined]


def optf(msg: object, name: str) -> float | None:
    """An optional float field, or None when unset."""
    return float(getattr(msg, name)) if msg.HasField(name) else None  # type: ignore[attr-defined]


def optional_quantities(msg: object, names: Iterable[str]) -> dict[str, float | None]:
    """The optional float fields ``names`` of ``msg``: ``None`` when unset, else held to be
    finite and not negative."""
    quantities: dict[str, float | None] = {}
    for name in names:
        value = optf(msg, name)
        if value is not None and finite(value, name) < 0:
            raise InvalidInput(f"{name} must not be negative, not {value}")
        quantities[name] = value
    return quantities


def set_present(msg: object, source: object, names: Iterable[str]) -> None:
    """Set each optional field ``names`` of ``msg`` that ``source`` has a value for; a None
    leaves the field unset."""
    for name in names:
        value = getattr(source, name)
        if value is not None:
            setattr(msg, name, value)


def text(value: str, what: str, limit: int = MAX_TEXT_LEN) -> str:
    """A string of at most ``limit`` characters."""
    if len(value) > limit:
        raise InvalidInput(f"{what} is longer than {limit} characters")
    return value


def counter(value: int, what: str) -> int:
    """A sequence number or counter that fits the stores' signed 64-bit integers."""
    if value > MAX_COUNTER:
        raise InvalidInput(f"{what} {value} is larger than {MAX_COUNTER}")
    return value


def finite(value: float, what: str) -> float:
    """A number that is neither infinite nor NaN."""
    if not math.isfinite(value):
        raise InvalidInput(f"{what} must be a finite number, not {value}")
    return value


def ident(value: str, what: str) -> str:
    """An identifier: present, printable, no whitespace, at most MAX_ID_LEN characters."""
    if not value:
        raise InvalidInput(f"{what} is missing")
    if len(value) > MAX_ID_LEN or not value.isprintable() or any(c.isspace() for c in value):
        raise InvalidInput(f"{what} {value[:40]!r} is not a valid identifier")
    return value


def node_id_text(value: str) -> str:
    """A node id from a request: present, printable, no whitespace, at most 128 characters."""
    return ident(value, "node id")


def labels(pairs: Mapping[str, str]) -> dict[str, str]:
    """Labels: keys of at most 317 characters (a Kubernetes prefix and name), values 256."""
    return {text(k, "label key", 317): text(v, "label value", 256) for k, v in pairs.items()}
