"""The agent's report spool: every report is kept on disk until the controller confirms it.

Reports are appended to segment files (``seg-<first sequence>.bin``; each record is an 8-byte
sequence, a 4-byte length and the serialized report). The controller confirms what it stored
(in its Welcome and in periodic ReportAcks); confirmed segments are deleted. While the
controller is away the spool grows up to ``max_bytes``; beyond that the oldest segment is
dropped and its reports counted in ``dropped`` (persisted, exported as a metric and in each
report's ``dropped_reports``). A full disk drops the report being written, counted the same
way; nothing crashes. A record cut short by a crash is ignored when the spool is reopened.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from backstop.uplink import metrics

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<QI")
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_SEGMENT_BYTES = 1024 * 1024
_DROPPED_FILE = "dropped"
_CONFIRMED_FILE = "confirmed"


@dataclass
class _Segment:
    path: Path
    first: int
    last: int
    size: int
    records: deque[tuple[int, bytes]]


class ReportSpool:
    def __init__(
        self,
        directory: Path,
        max_bytes: int = DEFAULT_MAX_BYTES,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self.segment_bytes = min(segment_bytes, max(1, max_bytes // 4))
        self._lock = threading.Lock()
        self._segments: deque[_Segment] = deque()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dropped = self._read_counter(_DROPPED_FILE)
        self.confirmed = self._read_counter(_CONFIRMED_FILE)
        self._confirmed_written = self.confirmed
        self._load()

    # --- state ---------------------------------------------------------------------------

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    def __len__(self) -> int:
        return sum(len(s.records) for s in self._segments)

    def _read_counter(self, name: str) -> int:
        try:
            return int((self.dir / name).read_text())
        except (OSError, ValueError):
            return 0

    def _write_counter(self, name: str, value: int) -> None:
        with contextlib.suppress(OSError):
            tmp = self.dir / (name + ".tmp")
            tmp.write_text(str(value))
            tmp.replace(self.dir / name)

    def _count_dropped(self, n: int) -> None:
        self.dropped += n
        metrics.REPORTS_DROPPED.inc(n)
        self._write_counter(_DROPPED_FILE, self.dropped)

    def _load(self) -> None:
        for path in sorted(self.dir.glob("seg-*.bin")):
            records: deque[tuple[int, bytes]] = deque()
            data = path.read_bytes()
            pos = 0
            while pos + _HEADER.size <= len(data):
                seq, length = _HEADER.unpack_from(data, pos)
                end = pos + _HEADER.size + length
                if end > len(data):
                    break  # a record cut short by a crash
                if seq > self.confirmed:
                    records.append((seq, data[pos + _HEADER.size : end]))
                pos = end
            if pos < len(data):
                with open(path, "r+b") as fh:
                    fh.truncate(pos)
            if records:
                self._segments.append(_Segment(path, records[0][0], records[-1][0], pos, records))
            else:
                path.unlink(missing_ok=True)
        if self._segments:
            log.info(
                "spool reopened",
                extra={"reports": len(self), "bytes": self.size_bytes, "dropped": self.dropped},
            )

    # --- writing -------------------------------------------------------------------------

    def append(self, sequence: int, data: bytes) -> bool:
        """Spool one report; False when it had to be dropped (disk full)."""
        record = _HEADER.pack(sequence, len(data)) + data
        with self._lock:
            segment = self._segments[-1] if self._segments else None
            if segment is None or segment.size + len(record) > self.segment_bytes:
                segment = _Segment(
                    self.dir / f"seg-{sequence:020d}.bin", sequence, sequence, 0, deque()
                )
                self._segments.append(segment)
            try:
                with open(segment.path, "ab") as fh:
                    fh.write(record)
            except OSError as exc:
                log.warning("spool write failed; report dropped", extra={"error": str(exc)})
                if not segment.records:
                    self._segments.pop()
                    segment.path.unlink(missing_ok=True)
                self._count_dropped(1)
                return False
            segment.records.append((sequence, data))
            segment.size += len(record)
            segment.last = sequence
            self._enforce_budget()
            return True

    def _enforce_budget(self) -> None:
        while len(self._segments) > 1 and self.size_bytes > self.max_bytes:
            oldest = self._segments.popleft()
            oldest.path.unlink(missing_ok=True)
            self._count_dropped(len(oldest.records))
            log.warning(
                "spool full: oldest reports dropped",
                extra={"count": len(oldest.records), "first": oldest.first, "last": oldest.last},
            )

    def flush(self) -> None:
        """fsync the newest segment and write down what was confirmed since the last flush
        (called every few reports; a kill -9 keeps page-cache writes)."""
        with self._lock:
            if self._confirmed_written != self.confirmed:
                self._write_counter(_CONFIRMED_FILE, self.confirmed)
                self._confirmed_written = self.confirmed
            if self._segments:
                with contextlib.suppress(OSError):
                    fd = os.open(self._segments[-1].path, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)

    # --- reading and confirming ----------------------------------------------------------

    def confirm(self, sequence: int) -> None:
        """The controller stored everything up to ``sequence``: forget it. The sequence is
        written down with the next :meth:`flush`; a spool reopened before that holds a few
        reports the controller already has, until its Welcome confirms them again."""
        with self._lock:
            self.confirmed = max(self.confirmed, sequence)
            while self._segments and self._segments[0].last <= sequence:
                self._segments.popleft().path.unlink(missing_ok=True)
            if self._segments:
                head = self._segments[0]
                while head.records and head.records[0][0] <= sequence:
                    head.records.popleft()

    def after(self, sequence: int) -> Iterator[tuple[int, bytes]]:
        """Spooled reports with a sequence above ``sequence``, oldest first."""
        with self._lock:
            pending = [r for s in self._segments for r in s.records if r[0] > sequence]
        yield from pending

    def next_after(self, sequence: int) -> tuple[int, bytes] | None:
        with self._lock:
            for segment in self._segments:
                if segment.last <= sequence:
                    continue
                for record in segment.records:
                    if record[0] > sequence:
                        return record
        return None
