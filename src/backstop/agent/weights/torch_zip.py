"""PyTorch zip checkpoints (``torch.save`` since 1.6): the archive directory and ``data.pkl``.

Layout: a zip archive with one top folder holding ``data.pkl`` (the pickled object),
``data/<key>`` (one member per storage, stored uncompressed and aligned), ``version`` and
``byteorder``. The zip directory is read through the header budget; ``data.pkl`` is read up
to the JSON limit and scanned by :mod:`backstop.agent.weights.pickle_scan`, never unpickled.
A tensor's data is located in the file from its storage member's local header, so it can be
sampled in place. Older pickle-only checkpoints are reported as unsupported.
"""

from __future__ import annotations

import io
import zipfile
from typing import TYPE_CHECKING

from backstop.agent.weights.dtypes import ELEMENT_BITS, tensor_bytes
from backstop.agent.weights.model import (
    InvalidWeights,
    Limits,
    ParsedWeights,
    TensorInfo,
)
from backstop.agent.weights.pickle_scan import TensorRef, scan
from backstop.agent.weights.reader import WeightsReader

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

MAX_MEMBERS = 1 << 19
"""Most zip members (a storage each, and a few more)."""
_LOCAL_HEADER = 30
_SMALL_MEMBER = 4096


class _BudgetFile(io.RawIOBase):
    """The file as ``zipfile`` sees it: every read charged to the reader's header budget."""

    def __init__(self, reader: WeightsReader) -> None:
        self._reader = reader
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._reader.size}[whence]
        self._pos = max(base + offset, 0)
        return self._pos

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        want = min(len(view), max(self._reader.size - self._pos, 0))
        data = self._reader.header(want, self._pos) if want else b""
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)


def parse(reader: WeightsReader, limits: Limits) -> ParsedWeights:
    """Parse a PyTorch zip checkpoint; raises :class:`InvalidWeights` with the reason."""
    try:
        archive = zipfile.ZipFile(_BudgetFile(reader))
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise InvalidWeights(f"not a readable zip archive: {exc}") from exc
    with archive:
        members = archive.infolist()
        if len(members) > MAX_MEMBERS:
            raise InvalidWeights(f"{len(members)} zip members, over the limit of {MAX_MEMBERS}")
        pickles = [
            m for m in members if m.filename.count("/") == 1 and m.filename.endswith("/data.pkl")
        ]
        if len(pickles) != 1:
            raise InvalidWeights("no single <archive>/data.pkl: not a torch.save checkpoint")
        folder = pickles[0].filename.removesuffix("data.pkl")
        pickled = _read_member(archive, pickles[0], limits.max_json_bytes)
        refs = scan(pickled, limits.max_tensors)
        by_name = {m.filename: m for m in members}
        tensors = [_tensor(reader, name, ref, by_name, folder) for name, ref in refs.items()]
        metadata = {
            key: _read_member(archive, by_name[folder + key], _SMALL_MEMBER)
            .decode("utf-8", "replace")
            .strip()
            for key in ("version", "byteorder")
            if folder + key in by_name
        }
    return ParsedWeights(
        valid=True,
        tensors=tuple(tensors),
        metadata=metadata,
    )


def _read_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, limit: int) -> bytes:
    if member.file_size > limit:
        raise InvalidWeights(f"{member.filename} is {member.file_size} bytes, over {limit}")
    try:
        with archive.open(member) as stream:
            data = stream.read(limit + 1)
    except (zipfile.BadZipFile, ValueError, EOFError, NotImplementedError) as exc:
        raise InvalidWeights(f"{member.filename} cannot be read: {exc}") from exc
    if len(data) > limit:
        raise InvalidWeights(f"{member.filename} is over {limit} bytes")
    return data


def _tensor(
    reader: WeightsReader,
    name: str,
    ref: TensorRef,
    members: dict[str, zipfile.ZipInfo],
    folder: str,
) -> TensorInfo:
    storage = ref.storage
    member = members.get(f"{folder}data/{storage.key}")
    if member is None:
        raise InvalidWeights(f"tensor {name!r}: storage {storage.key} is not in the archive")
    item_bytes = ELEMENT_BITS[storage.dtype] // 8
    if member.file_size < storage.numel * item_bytes:
        raise InvalidWeights(
            f"data shorter than the header says: storage {storage.key} has "
            f"{member.file_size} bytes, {storage.numel} {storage.dtype} elements need "
            f"{storage.numel * item_bytes}"
        )
    nbytes = tensor_bytes(storage.dtype, ref.shape)
    start = ref.storage_offset * item_bytes
    if ref.storage_offset < 0 or start + nbytes > storage.numel * item_bytes:
        raise InvalidWeights(f"tensor {name!r} runs past the end of its storage")
    offset = None
    if member.compress_type == zipfile.ZIP_STORED:
        local = reader.header(_LOCAL_HEADER, member.header_offset)
        if local[:4] != b"PK\x03\x04":
            raise InvalidWeights(f"storage {storage.key}: no local zip header")
        name_len = int.from_bytes(local[26:28], "little")
        extra_len = int.from_bytes(local[28:30], "little")
        data_at = member.header_offset + _LOCAL_HEADER + name_len + extra_len
        if data_at + member.file_size > reader.size:
            raise InvalidWeights(f"data shorter than the header says: storage {storage.key}")
        offset = data_at + start
    return TensorInfo(name, storage.dtype, ref.shape, nbytes, offset)
