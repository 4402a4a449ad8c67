"""A tolerant, bounded reader of the Prometheus text exposition format.

Only the samples whose metric name is asked for are kept; comments, other metrics and lines
that do not parse are skipped (a server's output is untrusted). At most ``max_lines`` lines
are looked at, and only finite values are kept.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field

MAX_LINES = 50_000
MAX_LABELS = 32


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    value: float = 0.0


def parse_samples(
    text: str, wanted: Collection[str], max_lines: int = MAX_LINES
) -> dict[str, list[Sample]]:
    """``{metric name: [samples]}`` for the names in ``wanted`` found in ``text``."""
    found: dict[str, list[Sample]] = {}
    for count, line in enumerate(text.splitlines()):
        if count >= max_lines:
            break
        if not line or line[0] == "#":
            continue
        name_end = _name_end(line)
        name = line[:name_end]
        if name not in wanted:
            continue
        sample = _parse_line(name, line[name_end:])
        if sample is not None:
            found.setdefault(name, []).append(sample)
    return found


def _name_end(line: str) -> int:
    for index, char in enumerate(line):
        if char in "{ \t":
            return index
    return len(line)


def _parse_line(name: str, rest: str) -> Sample | None:
    labels: dict[str, str] = {}
    if rest.startswith("{"):
        parsed = _parse_labels(rest)
        if parsed is None:
            return None
        labels, rest = parsed
    fields = rest.split()
    if not fields:
        return None
    try:
        value = float(fields[0])
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    return Sample(name, labels, value)


def _parse_labels(rest: str) -> tuple[dict[str, str], str] | None:
    """The ``{k="v",...}`` block at the start of ``rest`` and what follows it."""
    labels: dict[str, str] = {}
    index = 1
    while index < len(rest) and len(labels) <= MAX_LABELS:
        while index < len(rest) and rest[index] in " ,":
            index += 1
        if index < len(rest) and rest[index] == "}":
            return labels, rest[index + 1 :]
        equals = rest.find("=", index)
        if equals < 0 or equals + 1 >= len(rest) or rest[equals + 1] != '"':
            return None
        key = rest[index:equals].strip()
        value, index = _quoted(rest, equals + 2)
        if index < 0:
            return None
        labels[key] = value
    return None


def _quoted(text: str, start: int) -> tuple[str, int]:
    """The escaped string starting at ``start`` (after its opening quote), and the index past
    its closing quote; ``-1`` when it never closes."""
    out: list[str] = []
    index = start
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            nxt = text[index + 1]
            out.append("\n" if nxt == "n" else nxt)
            index += 2
            continue
        if char == '"':
            return "".join(out), index + 1
        out.append(char)
        index += 1
    return "", -1
