"""Bounded, counted reads from one weights file.

:class:`WeightsReader` is the only way parsers and the identity sampler touch a file: every
byte read is counted in ``bytes_read``, header reads stop at a budget (raising
:class:`InvalidWeights`), and sequential header parsing goes through a small window so that
many tiny fields cost few system calls. Files are opened read-only, non-blocking, without
updating their access time, and only when they are regular files.
"""

from __future__ import annotations

import os
import stat
import struct

from backstop.agent.weights.model import InvalidWeights
from backstop.core.closing import ClosedOnExit

WINDOW_BYTES = 64 * 1024
_U64 = struct.Struct("<Q")


def open_readonly(path: str | os.PathLike[str]) -> int:
    """Open for reading: non-blocking, close-on-exec, no controlling tty, no atime update."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
    try:
        return os.open(path, flags | os.O_NOATIME)
    except PermissionError:
        # O_NOATIME needs file ownership or CAP_FOWNER.
        return os.open(path, flags)


def pread_full(fd: int, length: int, offset: int) -> bytes:
    """Up to ``length`` bytes at ``offset``: short only at the end of the file."""
    parts: list[bytes] = []
    got = 0
    while got < length:
        block = os.pread(fd, length - got, offset + got)
        if not block:
            break
        parts.append(block)
        got += len(block)
    return b"".join(parts)


class WeightsReader(ClosedOnExit):
    """Reads one open file; ``header_budget`` bounds what header reads may cost."""

    def __init__(self, path: str | os.PathLike[str], header_budget: int) -> None:
        self._fd = open_readonly(path)
        st = os.fstat(self._fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(self._fd)
            raise InvalidWeights("not a regular file")
        self.size = st.st_size
        self.bytes_read = 0
        self.header_bytes = 0
        self._budget = header_budget
        self.window_bytes = WINDOW_BYTES
        self._window = b""
        self._window_at = 0

    def close(self) -> None:
        os.close(self._fd)

    def pread(self, length: int, offset: int) -> bytes:
        """Up to ``length`` bytes at ``offset``, short only at the end of the file; counted."""
        data = pread_full(self._fd, length, offset)
        self.bytes_read += len(data)
        return data

    def header(self, length: int, offset: int) -> bytes:
        """Exactly ``length`` header bytes at ``offset``, charged to the header budget."""
        if length < 0 or offset < 0 or offset + length > self.size:
            raise InvalidWeights(
                f"file ends at byte {self.size}, before the {length} header bytes at {offset}"
            )
        if offset >= self._window_at and offset + length <= self._window_at + len(self._window):
            start = offset - self._window_at
            return self._window[start : start + length]
        if length > self.window_bytes:
            self._charge(length)
            return self.pread(length, offset)
        want = min(self.window_bytes, self.size - offset)
        self._charge(want)
        self._window = self.pread(want, offset)
        self._window_at = offset
        return self._window[:length]

    def window_at(self, offset: int) -> tuple[bytes, int]:
        """The loaded header window holding ``offset`` (loading one when it does not hold the
        next 8 bytes there), and where ``offset`` falls in it; for loops over many small
        fields that would cost a call each through :meth:`header`."""
        inside = offset - self._window_at
        if inside < 0 or inside + 8 > len(self._window):
            self.header(min(8, self.size - offset), offset)  # loads a window from offset
            inside = offset - self._window_at
        return self._window, inside

    def _charge(self, length: int) -> None:
        self.header_bytes += length
        if self.header_bytes > self._budget:
            raise InvalidWeights(f"header over the limit of {self._budget} bytes")


class Cursor:
    """Sequential little-endian header fields from a :class:`WeightsReader`."""

    def __init__(self, reader: WeightsReader, offset: int = 0) -> None:
        self.reader = reader
        self.offset = offset

    def take(self, length: int) -> bytes:
        data = self.reader.header(length, self.offset)
        self.offset += length
        return data

    def skip(self, length: int) -> None:
        if self.offset + length > self.reader.size:
            raise InvalidWeights(f"file ends at byte {self.reader.size}, inside its header")
        self.offset += length

    def skip_strings(self, count: int) -> None:
        """Step over ``count`` length-prefixed strings (u64 length, then the bytes) without
        decoding them, many per window (a GGUF vocabulary has 150,000)."""
        left = count
        length_at = _U64.unpack_from
        while left:
            window, at = self.reader.window_at(self.offset)
            start, last = at, len(window) - 8
            while left and at <= last:
                nxt = at + 8 + length_at(window, at)[0]
                if nxt > last + 8:
                    break
                at = nxt
                left -= 1
            if at == start:  # a string running past the window: one at a time
                self.skip(self.u64())
                left -= 1
            else:
                self.offset += at - start

    def unpack(self, fmt: str) -> tuple[int | float, ...]:
        layout = struct.Struct("<" + fmt)
        return layout.unpack(self.take(layout.size))

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "little")

    def u64(self) -> int:
        return int.from_bytes(self.take(8), "little")
