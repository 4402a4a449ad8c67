"""Model weights files: recognise them and identify them by reading a constant number of bytes.

Formats, told apart by name first (so nothing else is ever opened) and then by content:

============  ==========================================  ====================================
format        names                                        content check
============  ==========================================  ====================================
safetensors   ``*.safetensors``                            u64 LE header length, JSON ``{``
gguf          ``*.gguf``, ollama blobs ``sha256-<hex>``    magic ``GGUF``
pytorch       ``*.pt``, ``*.pth``, ``*.bin``, ``*.ckpt``   zip (``PK\\3\\4``) or pickle (``\\x80``)
onnx          ``*.onnx``                                   a protobuf field tag
============  ==========================================  ====================================

Two hashes identify a file:

- ``header_sha256``: safetensors: SHA-256 of exactly the JSON header (tensor names, dtypes,
  shapes, offsets); other formats: of the first :data:`HEADER_PREFIX_BYTES` bytes.
  Safetensors headers longer than ``max_header_bytes`` are refused as corrupt or hostile.
- ``sampled_sha256``: SHA-256 of the file size (8 bytes, little endian) followed by
  :data:`SAMPLE_CHUNKS` chunks of :data:`CHUNK_BYTES` bytes at evenly spaced offsets
  ``(size - CHUNK_BYTES) * i // (SAMPLE_CHUNKS - 1)`` (offset 0 for files smaller than a
  chunk; a chunk is cut at the end of the file). A 100 GB file costs about 1 MiB of reads.

:class:`WeightsHasher` caches results by ``(st_dev, st_ino, size, mtime_ns)``, so a file is
read once however many processes map it and however often it is seen. Files are opened
non-blocking, without updating their access time, and only when they are regular files.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import replace
from pathlib import PurePosixPath

from backstop.agent.weights.reader import open_readonly, pread_full
from backstop.core.models import WeightsFile

log = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024
SAMPLE_CHUNKS = 16
HEADER_PREFIX_BYTES = 64 * 1024
MAX_SAFETENSORS_HEADER_BYTES = 100_000_000
"""The safetensors library's own limit on its JSON header."""
_READ_BLOCK = 1 << 20
_PICKLE_PROTOCOLS = range(2, 6)

_FORMATS_BY_SUFFIX = {
    ".safetensors": "safetensors",
    ".gguf": "gguf",
    ".pt": "pytorch",
    ".pth": "pytorch",
    ".bin": "pytorch",
    ".ckpt": "pytorch",
    ".onnx": "onnx",
}
_OLLAMA_BLOB = re.compile(r"^sha256[-:][0-9a-f]{64}$")

_CacheKey = tuple[int, int, int, int]


def expected_format(path: str) -> str:
    """The weights format a file name suggests, or ``""`` when the name is not a weights name."""
    name = PurePosixPath(path).name
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in _FORMATS_BY_SUFFIX:
        return _FORMATS_BY_SUFFIX[suffix]
    if _OLLAMA_BLOB.match(name):
        return "gguf"
    return ""


_UNAMBIGUOUS_SUFFIXES = frozenset({".safetensors", ".gguf", ".onnx"})


def claims_weights(path: str) -> bool:
    """Whether the name says weights and nothing else (``.safetensors``, ``.gguf``,
    ``.onnx``): such a file that does not parse is reported invalid. ``.bin``, ``.pth`` and
    Ollama blob names are shared with other files, and count only when their content does."""
    return PurePosixPath(path).suffix.lower() in _UNAMBIGUOUS_SUFFIXES


def is_weights_candidate(path: str) -> bool:
    """Whether a file name could be a weights file (no I/O)."""
    return bool(expected_format(path))


def model_hash(weights: Iterable[WeightsFile]) -> str:
    """SHA-256 over the sorted, distinct sampled hashes; ``""`` when there are none.

    Independent of the order in which files were found and of how many processes map them.
    """
    hashes = sorted({w.sampled_sha256 for w in weights if w.sampled_sha256})
    if not hashes:
        return ""
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()


def sample_offsets(size: int) -> tuple[int, ...]:
    """Offsets of the sampled chunks for a file of ``size`` bytes."""
    span = max(size - CHUNK_BYTES, 0)
    return tuple(span * i // (SAMPLE_CHUNKS - 1) for i in range(SAMPLE_CHUNKS))


class _NotWeights(Exception):
    """The file's content does not match its name's format."""


class WeightsHasher:
    """Recognises and hashes weights files; caches by inode so each file is read once.

    ``bytes_read`` counts every byte read from weights files, for metrics and tests.
    Not thread-safe: one discovery loop owns one hasher.
    """

    def __init__(
        self,
        *,
        cache_entries: int = 4096,
        max_header_bytes: int = MAX_SAFETENSORS_HEADER_BYTES,
    ) -> None:
        self._cache: OrderedDict[_CacheKey, WeightsFile | None] = OrderedDict()
        self._cache_entries = cache_entries
        self._max_header_bytes = max_header_bytes
        self.bytes_read = 0
        self.files_hashed = 0

    def hash_file(
        self,
        path: str | os.PathLike[str],
        *,
        display_path: str | None = None,
        expected_id: tuple[int, int] | None = None,
    ) -> WeightsFile | None:
        """Identify the weights file at ``path``; ``None`` when it is not one (or is gone).

        ``path`` is what is opened (e.g. a ``/proc/PID/fd/N`` link); ``display_path`` is the
        name reported and used to pick the format (default: ``path``). With
        ``expected_id`` (``(st_dev, st_ino)``), any other file is left unread: the check a
        caller makes when ``path`` was resolved through directories it does not trust.
        """
        shown = display_path if display_path is not None else os.fspath(path)
        fmt = expected_format(shown)
        if not fmt:
            return None
        try:
            st = os.stat(path)
        except OSError as exc:
            log.debug("weights file not readable: %s: %s", shown, exc)
            return None
        if not stat.S_ISREG(st.st_mode) or (
            expected_id is not None and (st.st_dev, st.st_ino) != expected_id
        ):
            return None
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if key in self._cache:
            self._cache.move_to_end(key)
            cached = self._cache[key]
            return None if cached is None else replace(cached, path=shown)
        try:
            result: WeightsFile | None = self._hash_new(path, shown, fmt, key)
        except _NotWeights as exc:
            log.debug("not a %s file: %s: %s", fmt, shown, exc)
            result = None
        except OSError as exc:
            log.debug("weights file not readable: %s: %s", shown, exc)
            return None
        self._cache[key] = result
        if len(self._cache) > self._cache_entries:
            self._cache.popitem(last=False)
        return result

    def _hash_new(
        self, path: str | os.PathLike[str], shown: str, fmt: str, key: _CacheKey
    ) -> WeightsFile:
        fd = open_readonly(path)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != key[:2]:
                raise _NotWeights("file changed while opening")
            size = st.st_size
            prefix = self._pread(fd, min(HEADER_PREFIX_BYTES, size), 0)
            header_sha256 = self._header_hash(fd, fmt, prefix, size)
            sampled_sha256 = self._sampled_hash(fd, prefix, size)
        finally:
            os.close(fd)
        self.files_hashed += 1
        return WeightsFile(
            path=shown,
            format=fmt,
            size_bytes=size,
            header_sha256=header_sha256,
            sampled_sha256=sampled_sha256,
        )

    def _header_hash(self, fd: int, fmt: str, prefix: bytes, size: int) -> str:
        if fmt == "safetensors":
            return self._safetensors_header_hash(fd, prefix, size)
        if fmt == "gguf" and not prefix.startswith(b"GGUF"):
            raise _NotWeights("no GGUF magic")
        if fmt == "pytorch" and not _is_pytorch(prefix):
            raise _NotWeights("neither a zip archive nor a pickle")
        if fmt == "onnx" and not _is_protobuf(prefix):
            raise _NotWeights("does not start with a protobuf field")
        return hashlib.sha256(prefix).hexdigest()

    def _safetensors_header_hash(self, fd: int, prefix: bytes, size: int) -> str:
        if len(prefix) < 10:
            raise _NotWeights("too short for a safetensors header")
        length = int.from_bytes(prefix[:8], "little")
        if length < 2 or length > self._max_header_bytes or length > size - 8:
            raise _NotWeights(f"implausible header length {length}")
        if prefix[8:9] != b"{":
            raise _NotWeights("header is not a JSON object")
        digest = hashlib.sha256(prefix[8 : 8 + length])
        offset = len(prefix)
        end = 8 + length
        while offset < end:
            block = self._pread(fd, min(_READ_BLOCK, end - offset), offset)
            if not block:
                raise _NotWeights("file ends inside its header")
            digest.update(block)
            offset += len(block)
        return digest.hexdigest()

    def _sampled_hash(self, fd: int, prefix: bytes, size: int) -> str:
        digest = hashlib.sha256(size.to_bytes(8, "little"))
        chunks: dict[int, bytes] = {}
        for offset in sample_offsets(size):
            if offset not in chunks:
                want = min(CHUNK_BYTES, size - offset)
                if offset + want <= len(prefix):
                    chunks[offset] = prefix[offset : offset + want]
                else:
                    chunks[offset] = self._pread(fd, want, offset)
            digest.update(chunks[offset])
        return digest.hexdigest()

    def _pread(self, fd: int, length: int, offset: int) -> bytes:
        """Read up to ``length`` bytes at ``offset`` (short only at end of file), counted."""
        data = pread_full(fd, length, offset)
        self.bytes_read += len(data)
        return data


def _is_pytorch(prefix: bytes) -> bool:
    if prefix.startswith(b"PK\x03\x04"):
        return True
    return len(prefix) >= 2 and prefix[0] == 0x80 and prefix[1] in _PICKLE_PROTOCOLS


def _is_protobuf(prefix: bytes) -> bool:
    """ONNX ModelProto: the first byte is a field tag (field >= 1, wire type 0, 1, 2 or 5)."""
    if not prefix:
        return False
    tag = prefix[0]
    return tag >> 3 >= 1 and tag & 0x7 in (0, 1, 2, 5)
