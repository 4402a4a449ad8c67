"""Log lines: RFC 3339 stamps in both formats, values as they are in JSON, control characters
escaped in text lines."""

from __future__ import annotations

import json
import logging
from datetime import datetime

from backstop.telemetry.logs import JsonFormatter, TextFormatter, escape_controls, timestamp

CREATED = 1796648400.1239  # 2026-12-07T13:00:00.1239Z


def _record(msg: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("backstop.x", logging.INFO, __file__, 1, msg, None, None)
    record.created = CREATED
    record.__dict__.update(extra)
    return record


def test_timestamps_are_rfc3339_utc_to_the_millisecond() -> None:
    assert timestamp(CREATED) == "2026-12-07T13:00:00.123Z"
    assert timestamp(0.0) == "1970-01-01T00:00:00.000Z"
    assert datetime.fromisoformat(timestamp(CREATED)).timestamp() == 1796648400.123


def test_json_lines_carry_the_stamp_and_values_as_they_are() -> None:
    entry = json.loads(JsonFormatter().format(_record("paused", reason="a\nb\x1b[2J")))
    assert entry["ts"] == "2026-12-07T13:00:00.123Z"
    assert entry["reason"] == "a\nb\x1b[2J"
    assert (entry["level"], entry["logger"], entry["msg"]) == ("info", "backstop.x", "paused")


def test_text_lines_escape_control_characters_in_the_message_and_values() -> None:
    line = TextFormatter().format(_record("x\ny", reason="fake\n13:00:00 ERROR forged\x1b[2J"))
    assert "\n" not in line
    assert "\x1b" not in line
    assert line.startswith("2026-12-07T13:00:00.123Z INFO    backstop.x: x\\ny  ")
    assert line.endswith("reason=fake\\n13:00:00 ERROR forged\\x1b[2J")


def test_printable_text_is_left_alone() -> None:
    assert escape_controls("pause ünïcode 1/2 = ok") == "pause ünïcode 1/2 = ok"
    assert escape_controls("tab\there") == "tab\\there"
