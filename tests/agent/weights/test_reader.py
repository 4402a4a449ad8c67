"""The bounded reader's fast skip over many length-prefixed strings (a GGUF vocabulary): the
same end offset as one field at a time, across window edges and strings longer than a window."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from backstop.agent.weights.model import InvalidWeights
from backstop.agent.weights.reader import Cursor, WeightsReader


def _strings(lengths: list[int]) -> bytes:
    return b"".join(struct.pack("<Q", n) + bytes([65 + n % 26]) * n for n in lengths)


@pytest.mark.parametrize("window", [16, 37, 64, 65536])
def test_skip_strings_ends_where_reading_each_would(tmp_path: Path, window: int) -> None:
    lengths = [0, 1, 7, 8, 9, 30, 100, 3, 0, 250, 5] * 20
    body = _strings(lengths)
    path = tmp_path / "strings.bin"
    path.write_bytes(body + b"TAIL")
    with WeightsReader(path, header_budget=1 << 20) as reader:
        reader.window_bytes = window
        cursor = Cursor(reader)
        cursor.skip_strings(len(lengths))
        assert cursor.offset == len(body)
        assert cursor.take(4) == b"TAIL"


def test_a_string_running_past_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "short.bin"
    path.write_bytes(_strings([4, 4]) + struct.pack("<Q", 1 << 40) + b"xx")
    with WeightsReader(path, header_budget=1 << 20) as reader:
        reader.window_bytes = 16
        with pytest.raises(InvalidWeights, match="file ends"):
            Cursor(reader).skip_strings(3)
