"""The audit chain kept in a file: :class:`FileAuditLog`, the one writer of a JSON-lines journal.

This module owns the file side of the chain that :mod:`backstop.security.audit` defines: the
exclusive lock that keeps a second writer from forking it, the check of the last line before
extending it, and the fsync of each line before ``append`` returns, so a caller that appends
before acting never acts without a record. Reading and verifying a file stay in
:mod:`backstop.security.audit`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from backstop.core.closing import ClosedOnExit
from backstop.core.errors import Conflict, InvalidInput, StoreError
from backstop.security.audit import AuditEntry, next_entry, read_entries

log = logging.getLogger(__name__)

_TAIL_BLOCK = 64 * 1024


class FileAuditLog(ClosedOnExit):
    """An append-only audit chain in a JSON-lines file; thread-safe, one writer process.

    Opening takes an exclusive ``flock`` (a second writer gets ``Conflict``) and reads the
    last line to continue the chain. A last line that is incomplete or fails its own hash is
    refused with ``Conflict``: appending would hide the damage. Each :meth:`append` writes one
    line with ``O_APPEND`` and fsyncs it before returning.
    """

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._broken = ""
        created = not path.exists()
        try:
            self._fd: int | None = os.open(
                path,
                os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                0o600,
            )
        except OSError as exc:
            raise StoreError(f"cannot open audit log {path}: {exc.strerror}") from exc
        try:
            _lock_exclusively(self._fd, path)
            self._last = _read_tail(self._fd, path)
            if created:
                _fsync_dir(path.parent)
        except BaseException:
            os.close(self._fd)
            self._fd = None
            raise
        log.debug(
            "audit log opened at seq %d",
            self._last.seq if self._last else 0,
            extra={"path": str(path)},
        )

    @property
    def last(self) -> AuditEntry | None:
        """The newest entry, or ``None`` for an empty log."""
        return self._last

    def append(
        self,
        *,
        actor: str,
        action: str,
        subject: str,
        details: Mapping[str, Any] | None = None,
        ts: float | None = None,
    ) -> AuditEntry:
        """Append one entry and make it durable (fsync) before returning it."""
        with self._lock:
            if self._fd is None:
                raise Conflict(f"audit log {self.path} is closed")
            if self._broken:
                raise StoreError(f"audit log {self.path} is unusable: {self._broken}")
            entry = next_entry(
                self._last,
                ts=self._clock() if ts is None else ts,
                actor=actor,
                action=action,
                subject=subject,
                details=details or {},
            )
            data = memoryview((entry.to_line() + "\n").encode("ascii"))
            try:
                while data:
                    written = os.write(self._fd, data)
                    data = data[written:]
                os.fsync(self._fd)
            except OSError as exc:
                self._broken = f"a write failed ({exc.strerror}); reopen to check the tail"
                raise StoreError(f"cannot append to audit log {self.path}: {exc}") from exc
            self._last = entry
            return entry

    def entries(self) -> Iterator[AuditEntry]:
        """Every entry in the file, parsed (see :func:`read_entries`)."""
        return read_entries(self.path)

    def close(self) -> None:
        """Release the file; appends fail afterwards."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _lock_exclusively(fd: int, path: Path) -> None:
    """One writer per file: a second would fork the chain."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        raise Conflict(f"audit log {path} is already open for writing elsewhere") from exc


def _read_tail(fd: int, path: Path) -> AuditEntry | None:
    """The last entry of the file, checked against its own hash; ``None`` if empty."""
    size = os.fstat(fd).st_size
    if size == 0:
        return None
    advice = f"run `backstop audit verify {path}` to locate the damage"
    end = size
    tail = b""
    while True:
        start = max(0, end - _TAIL_BLOCK)
        tail = os.pread(fd, end - start, start) + tail
        end = start
        if not tail.endswith(b"\n"):
            raise Conflict(
                f"audit log {path}: the last line is incomplete (a write was cut short); "
                f"refusing to extend the chain; {advice}",
            )
        if b"\n" in tail[:-1] or start == 0:
            break
    last_line = tail[:-1].rsplit(b"\n", 1)[-1]
    try:
        entry = AuditEntry.from_dict(json.loads(last_line.decode("utf-8")))
    except (ValueError, InvalidInput) as exc:
        raise Conflict(
            f"audit log {path}: the last line is not a valid entry; "
            f"refusing to extend the chain; {advice}",
        ) from exc
    if entry.computed_hash() != entry.hash:
        raise Conflict(
            f"audit log {path}: the last entry (seq {entry.seq}) does not match its hash; "
            f"refusing to extend the chain; {advice}",
        )
    return entry


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
