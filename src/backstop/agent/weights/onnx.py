"""ONNX models: producer, opset and initializer shapes, read from the protobuf wire format.

No ``onnx`` package: the ``ModelProto`` is walked field by field with bounded reads. Kept:
``ir_version``, ``producer_name``/``producer_version``, the default-domain opset,
``metadata_props``, and each ``graph.initializer``'s name, type and dimensions with the
place of its ``raw_data`` (so it can be sampled in place). Nodes, doc strings and tensor
data are stepped over by their length, never read; the walk stops at the header budget.
Initializers stored elsewhere (external data) or in typed fields are listed but not sampled.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from backstop.agent.weights.dtypes import ONNX_TYPES, check_rank, tensor_bytes
from backstop.agent.weights.model import (
    MAX_METADATA_VALUE_CHARS,
    InvalidWeights,
    Limits,
    ParsedWeights,
    TensorInfo,
    keep_metadata,
)
from backstop.agent.weights.reader import WeightsReader

FORMAT = "onnx"
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
_WINDOW_BYTES = 1024
"""Small reads: the fields before each initializer's raw_data, not the data after them."""


@dataclass
class _Field:
    number: int
    wire: int
    value: int  # the varint, or for bytes the length
    start: int  # where a bytes field's content starts


@dataclass
class _Model:
    metadata: dict[str, object] = field(default_factory=dict)
    opset: int = 0
    tensors: list[TensorInfo] = field(default_factory=list)


def looks_like(prefix: bytes) -> bool:
    """A ``ModelProto`` starts with a field tag: field >= 1, wire type 0, 1, 2 or 5."""
    return bool(prefix) and prefix[0] >> 3 >= 1 and prefix[0] & 7 in (0, 1, 2, 5)


def parse(reader: WeightsReader, limits: Limits) -> ParsedWeights:
    """Parse an ONNX model; raises :class:`InvalidWeights` with the reason."""
    model = _Model()
    reader.window_bytes = _WINDOW_BYTES
    for f in _fields(reader, 0, reader.size):
        if f.number == 1 and f.wire == _VARINT:
            model.metadata["ir_version"] = f.value
        elif f.number in (2, 3) and f.wire == _BYTES:
            key = "producer_name" if f.number == 2 else "producer_version"
            model.metadata[key] = _text(reader, f)
        elif f.number == 7 and f.wire == _BYTES:
            _graph(reader, f, model, limits)
        elif f.number == 8 and f.wire == _BYTES:
            entry = _strings_and_ints(reader, f)
            version = entry.get(2)
            if entry.get(1, "") in ("", "ai.onnx") and isinstance(version, int):
                model.opset = version
        elif f.number == 14 and f.wire == _BYTES:
            entry = _strings_and_ints(reader, f)
            model.metadata[str(entry.get(1, ""))] = entry.get(2, "")
    if "ir_version" not in model.metadata:
        raise InvalidWeights("no ir_version: not an ONNX model")
    return ParsedWeights(
        valid=True,
        tensors=tuple(model.tensors),
        producer=str(model.metadata.get("producer_name", "")),
        opset=model.opset,
        metadata=keep_metadata(model.metadata),
    )


def _graph(reader: WeightsReader, graph: _Field, model: _Model, limits: Limits) -> None:
    for f in _fields(reader, graph.start, graph.start + graph.value):
        if f.number == 5 and f.wire == _BYTES:
            if len(model.tensors) >= limits.max_tensors:
                raise InvalidWeights(f"over {limits.max_tensors} initializers")
            model.tensors.append(_initializer(reader, f))
        elif f.number == 2 and f.wire == _BYTES:
            model.metadata["graph_name"] = _text(reader, f)


def _initializer(reader: WeightsReader, tensor: _Field) -> TensorInfo:
    dims: list[int] = []
    data_type = 0
    name = ""
    raw: _Field | None = None
    for f in _fields(reader, tensor.start, tensor.start + tensor.value):
        if f.number == 1 and f.wire == _VARINT:
            dims.append(f.value)
        elif f.number == 1 and f.wire == _BYTES:  # packed dims
            end = f.start + f.value
            offset = f.start
            while offset < end:
                dim, offset = _varint(reader, offset, end)
                dims.append(dim)
        elif f.number == 2 and f.wire == _VARINT:
            data_type = f.value
        elif f.number == 8 and f.wire == _BYTES:
            name = _text(reader, f)
        elif f.number == 9 and f.wire == _BYTES:
            raw = f
        check_rank(len(dims), f"initializer {name!r}")
    if data_type not in ONNX_TYPES:
        raise InvalidWeights(f"initializer {name!r}: unsupported data type {data_type}")
    dtype = ONNX_TYPES[data_type]
    shape = tuple(d if d < 1 << 63 else d - (1 << 64) for d in dims)
    if any(d < 0 for d in shape):
        raise InvalidWeights(f"initializer {name!r}: negative dimension")
    nbytes = tensor_bytes(dtype, shape)
    if raw is not None and raw.value != nbytes:
        raise InvalidWeights(
            f"initializer {name!r}: raw_data has {raw.value} bytes, {dtype} {list(shape)} "
            f"needs {nbytes}"
        )
    return TensorInfo(name, dtype, shape, nbytes, raw.start if raw is not None else None)


def _strings_and_ints(reader: WeightsReader, message: _Field) -> dict[int, object]:
    """A small message of string and integer fields (opset ids, string-string entries)."""
    values: dict[int, object] = {}
    for f in _fields(reader, message.start, message.start + message.value):
        if f.wire == _BYTES:
            values[f.number] = _text(reader, f)
        elif f.wire == _VARINT:
            values[f.number] = f.value
    return values


def _text(reader: WeightsReader, f: _Field) -> str:
    length = min(f.value, MAX_METADATA_VALUE_CHARS)
    return reader.header(length, f.start).decode("utf-8", "replace")


def _fields(reader: WeightsReader, start: int, end: int) -> Iterator[_Field]:
    """The fields of one message in ``[start, end)``, content left unread."""
    offset = start
    while offset < end:
        tag, offset = _varint(reader, offset, end)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise InvalidWeights(f"protobuf field number 0 at byte {offset}")
        if wire == _VARINT:
            value, offset = _varint(reader, offset, end)
            yield _Field(number, wire, value, offset)
            continue
        if wire == _BYTES:
            value, offset = _varint(reader, offset, end)
        elif wire in (_FIXED64, _FIXED32):
            value = 8 if wire == _FIXED64 else 4
        else:
            raise InvalidWeights(f"protobuf wire type {wire} at byte {offset}")
        if offset + value > end:
            raise InvalidWeights(f"protobuf field {number} runs past its message at byte {end}")
        yield _Field(number, wire, value, offset)
        offset += value


def _varint(reader: WeightsReader, offset: int, end: int) -> tuple[int, int]:
    data = reader.header(min(10, end - offset), offset)
    value = 0
    for index, byte in enumerate(data):
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            return value, offset + index + 1
    raise InvalidWeights(f"protobuf varint runs past byte {end}")
