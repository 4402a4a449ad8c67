"""The report spool: kept until confirmed, bounded with counted drops, survives crashes."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from backstop.uplink.spool import ReportSpool


def _fill(spool: ReportSpool, first: int, last: int, size: int = 100) -> None:
    for seq in range(first, last + 1):
        spool.append(seq, bytes([seq % 256]) * size)


def test_reports_stay_until_confirmed_and_come_back_in_order(tmp_path: Path) -> None:
    spool = ReportSpool(tmp_path, segment_bytes=1000)
    _fill(spool, 1, 30)
    assert [seq for seq, _ in spool.after(0)] == list(range(1, 31))
    assert spool.next_after(12) == (13, bytes([13]) * 100)
    spool.confirm(20)
    assert [seq for seq, _ in spool.after(0)] == list(range(21, 31))
    assert len(list(tmp_path.glob("seg-*.bin"))) <= 2  # confirmed segments are deleted
    unflushed = ReportSpool(tmp_path, segment_bytes=1000)  # the confirmation not yet written
    assert min(seq for seq, _ in unflushed.after(0)) <= 20
    spool.flush()
    reopened = ReportSpool(tmp_path, segment_bytes=1000)
    assert [seq for seq, _ in reopened.after(0)] == list(range(21, 31))
    assert reopened.dropped == 0


def test_full_spool_drops_oldest_and_counts_them(tmp_path: Path) -> None:
    spool = ReportSpool(tmp_path, max_bytes=5_000, segment_bytes=1_000)
    _fill(spool, 1, 200)
    kept = [seq for seq, _ in spool.after(0)]
    assert kept == list(range(kept[0], 201))  # the newest, contiguous
    assert spool.dropped == 200 - len(kept) > 0
    assert spool.size_bytes <= 5_000 + 1_000
    assert ReportSpool(tmp_path, max_bytes=5_000).dropped == spool.dropped  # persisted


def test_a_record_cut_short_by_a_crash_is_ignored(tmp_path: Path) -> None:
    spool = ReportSpool(tmp_path)
    _fill(spool, 1, 5)
    segment = next(tmp_path.glob("seg-*.bin"))
    with open(segment, "ab") as fh:
        fh.write(b"\x06\x00\x00\x00\x00\x00\x00\x00\xff\x00")  # header of record 6, no body
    reopened = ReportSpool(tmp_path)
    assert [seq for seq, _ in reopened.after(0)] == [1, 2, 3, 4, 5]
    reopened.append(6, b"six")
    assert [seq for seq, _ in ReportSpool(tmp_path).after(0)] == [1, 2, 3, 4, 5, 6]


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB tmpfs: writes beyond it fail with ENOSPC."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_disk_full_drops_and_counts_without_crashing(tiny_disk: Path) -> None:
    assert os.statvfs(tiny_disk).f_blocks * os.statvfs(tiny_disk).f_frsize <= 64 * 1024
    spool = ReportSpool(tiny_disk / "spool", max_bytes=10 * 2**20, segment_bytes=16 * 1024)
    stored = sum(spool.append(seq, b"x" * 4000) for seq in range(1, 41))
    assert 0 < stored < 40
    assert spool.dropped == 40 - stored
    spool.confirm(stored // 2)  # space comes back once the controller confirms
    assert spool.append(41, b"y" * 100)
