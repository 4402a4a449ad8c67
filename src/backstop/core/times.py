"""Times as people and scripts read them: RFC 3339 in UTC (``2026-12-07T13:00:00Z``)."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(ts: float, *, milliseconds: bool = False) -> str:
    """Epoch seconds as RFC 3339 in UTC, to the second or (cut, not rounded) the millisecond."""
    spec = "milliseconds" if milliseconds else "seconds"
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec=spec).replace("+00:00", "Z")
