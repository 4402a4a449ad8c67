"""Structured logging: JSON lines in production, readable lines on a terminal.

Field names passed in ``extra=`` are constants across the code base (``node``, ``gpu_uuid``,
``pid``, ``workload_id``, ``correction_id``) so logs can be joined and searched. Both formats
stamp each line with an RFC 3339 time in UTC, to the millisecond (``2026-12-07T13:00:00.123Z``).
JSON lines carry values as they are (JSON's own encoding is the only escaping); text lines
escape control characters in the message and in values, so a value cannot forge a line.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from backstop.core.models import CorrectionSpec
from backstop.core.times import rfc3339

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def timestamp(created: float) -> str:
    """``created`` (seconds since the epoch) as RFC 3339 in UTC, to the millisecond."""
    return rfc3339(created, milliseconds=True)


def escape_controls(text: str) -> str:
    """``text`` with every control character written as an escape (``\\n``, ``\\x1b``)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


def correction_fields(spec: CorrectionSpec, outcome: str, **more: Any) -> dict[str, Any]:
    """The ``extra=`` of a line about one correction: who issued it, why, and what came of it
    (admitted, refused, applied, failed...)."""
    return {
        "correction_id": spec.correction_id,
        "action": spec.action.value,
        "issuer": spec.issuer,
        "reason": spec.reason,
        "outcome": outcome,
        **more,
    }


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = timestamp(record.created)
        extra = " ".join(f"{k}={escape_controls(str(v))}" for k, v in _fields(record).items())
        message = escape_controls(record.getMessage())
        line = f"{stamp} {record.levelname:<7} {record.name}: {message}"
        if extra:
            line += f"  {extra}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(level: str = "info", fmt: str = "auto") -> None:
    """Log to stderr; ``fmt`` is json, text, or auto (text on a terminal, else JSON)."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("grpc").setLevel(logging.WARNING)
