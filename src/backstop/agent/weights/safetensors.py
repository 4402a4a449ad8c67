"""Safetensors files: the JSON header (tensor names, dtypes, shapes, offsets, ``__metadata__``).

Layout: an 8-byte little-endian header length, the JSON header, then the tensor data; each
tensor's ``data_offsets`` are relative to the end of the header. The header is refused when
its length is over the limit or past the end of the file, when it is not a JSON object, nests
too deeply or declares too many tensors, and when a tensor's offsets disagree with its dtype
and shape, overlap another's, or run past the end of the file.
"""

from __future__ import annotations

from backstop.agent.weights.bounded_json import load_json
from backstop.agent.weights.dtypes import check_shape, tensor_bytes
from backstop.agent.weights.model import (
    MAX_DIMS,
    InvalidWeights,
    Limits,
    ParsedWeights,
    TensorInfo,
    keep_metadata,
)
from backstop.agent.weights.reader import WeightsReader

FORMAT = "safetensors"


def looks_like(prefix: bytes) -> bool:
    """Whether a file's first bytes are a safetensors header length and ``{``."""
    return len(prefix) >= 9 and prefix[8:9] == b"{" and int.from_bytes(prefix[:8], "little") > 1


def parse(reader: WeightsReader, limits: Limits) -> ParsedWeights:
    """Parse a safetensors file; raises :class:`InvalidWeights` with the reason."""
    if reader.size < 8:
        raise InvalidWeights("too short for a safetensors header")
    length = int.from_bytes(reader.header(8, 0), "little")
    if length > limits.max_json_bytes:
        raise InvalidWeights(
            f"header length {length} is over the limit of {limits.max_json_bytes} bytes"
        )
    if length > reader.size - 8:
        raise InvalidWeights(
            f"header length {length} runs past the end of the {reader.size}-byte file"
        )
    raw = load_json(
        reader.header(length, 8),
        max_bytes=limits.max_json_bytes,
        max_depth=limits.max_json_depth,
        what="safetensors header",
    )
    if not isinstance(raw, dict):
        raise InvalidWeights("safetensors header is not a JSON object")
    metadata = raw.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise InvalidWeights("__metadata__ is not an object")
    if len(raw) > limits.max_tensors:
        raise InvalidWeights(f"{len(raw)} tensors, over the limit of {limits.max_tensors}")
    data_start = 8 + length
    tensors = [_tensor(name, entry, data_start) for name, entry in raw.items()]
    _check_extents(tensors, data_start, reader.size)
    return ParsedWeights(
        valid=True,
        tensors=tuple(tensors),
        metadata=keep_metadata(metadata),
    )


def _tensor(name: str, entry: object, data_start: int) -> TensorInfo:
    if not isinstance(entry, dict):
        raise InvalidWeights(f"tensor {name!r}: entry is not an object")
    dtype = entry.get("dtype")
    if not isinstance(dtype, str):
        raise InvalidWeights(f"tensor {name!r}: no dtype")
    shape = check_shape(entry.get("shape"), MAX_DIMS, f"tensor {name!r}")
    offsets = entry.get("data_offsets")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise InvalidWeights(f"tensor {name!r}: data_offsets is not [begin, end]")
    nbytes = tensor_bytes(dtype, shape)
    if offsets[1] - offsets[0] != nbytes:
        raise InvalidWeights(
            f"tensor {name!r}: {offsets[1] - offsets[0]} bytes of data, "
            f"but {dtype} {list(shape)} needs {nbytes}"
        )
    return TensorInfo(name, dtype, shape, nbytes, data_start + offsets[0])


def _check_extents(tensors: list[TensorInfo], data_start: int, size: int) -> None:
    end = data_start
    for tensor in sorted(tensors, key=lambda t: (t.offset or 0, t.nbytes)):
        start = tensor.offset or 0
        if start < end:
            raise InvalidWeights(f"tensor {tensor.name!r} overlaps the tensor before it")
        end = start + tensor.nbytes
    if end > size:
        raise InvalidWeights(
            f"data shorter than the header says: tensors end at byte {end}, the file at byte {size}"
        )
