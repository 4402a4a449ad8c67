"""JSON from untrusted files, with its nesting depth checked before it is parsed.

``json.loads`` recurses once per level of nesting; a header of a million ``[`` would cost a
deep recursion before failing. :func:`load_json` first measures the depth without recursion
(strings removed, then the innermost bracket pairs stripped, one level per pass at C speed)
and refuses documents nested deeper than asked.
"""

from __future__ import annotations

import json
import re

from backstop.agent.weights.model import InvalidWeights

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_INNERMOST = re.compile(rb"\[\]|\{\}")


def nesting_depth_exceeds(data: bytes, max_depth: int) -> bool:
    """Whether ``data`` nests arrays and objects deeper than ``max_depth`` levels.

    Brackets that do not pair up also count as too deep: ``json.loads`` is not asked to
    find that out by recursing into them.
    """
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    for _ in range(max_depth):
        if not brackets:
            return False
        brackets = _INNERMOST.sub(b"", brackets)
    return bool(brackets)


def load_json(data: bytes, *, max_bytes: int, max_depth: int, what: str) -> object:
    """Parse ``data`` as JSON, refusing it (:class:`InvalidWeights`) when too big or deep."""
    if len(data) > max_bytes:
        raise InvalidWeights(f"{what} is {len(data)} bytes, over the limit of {max_bytes}")
    if nesting_depth_exceeds(data, max_depth):
        if _balanced(data):
            raise InvalidWeights(f"{what} nests deeper than {max_depth} levels")
        raise InvalidWeights(f"{what} is not JSON: its brackets do not pair up")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise InvalidWeights(f"{what} is not JSON: {exc}") from exc


def _balanced(data: bytes) -> bool:
    brackets = _STRING.sub(b"", data)
    return brackets.count(b"[") == brackets.count(b"]") and brackets.count(b"{") == brackets.count(
        b"}"
    )
