"""Number flags with their allowed range, so a bad value is a usage error and not a
traceback (a protobuf field overflowing, a NaN deadline)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

MAX_WAIT_S = 7 * 24 * 3600.0
LOG_LEVELS = ("debug", "info", "warning", "error")


def whole(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not allowed: give a whole number from {low} to {high}"
            )
        return value

    return parse


def seconds(low: float, high: float, *, low_open: bool = False) -> Callable[[str], float]:
    """A finite number of seconds within [low, high], or (low, high] with ``low_open``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        ok = math.isfinite(value) and value <= high and (value > low if low_open else value >= low)
        if not ok:
            span = f"({low:g}, {high:g}]" if low_open else f"[{low:g}, {high:g}]"
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed: give seconds within {span}")
        return value

    return parse


def finite(text: str) -> float:
    """Any finite number (its own check says the range, e.g. a power fraction)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def log_level(text: str) -> str:
    if text.lower() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"unknown log level {text!r}: choose from {', '.join(LOG_LEVELS)}"
        )
    return text.lower()
