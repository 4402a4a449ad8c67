"""GGUF files (versions 2 and 3): key-value metadata and tensor infos.

Layout: magic ``GGUF``, u32 version, u64 tensor count, u64 key-value count, the key-values,
the tensor infos (name, dimensions, ggml type, offset), then tensor data from the next
``general.alignment`` boundary. Scalars and short strings are kept as metadata; arrays (the
tokenizer's vocabulary, merges and scores) are stepped over, never kept. Counts, string
lengths, dimensions and nesting are checked before anything is read, and every header byte
is charged to the header budget.
"""

from __future__ import annotations

import struct

from backstop.agent.weights.dtypes import check_rank
from backstop.agent.weights.model import (
    MAX_METADATA_VALUE_CHARS,
    InvalidWeights,
    Limits,
    ParsedWeights,
    TensorInfo,
    element_count,
    keep_metadata,
)
from backstop.agent.weights.reader import Cursor, WeightsReader

FORMAT = "gguf"
MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
MAX_KEY_VALUES = 65_536
MAX_ARRAY_NESTING = 4
DEFAULT_ALIGNMENT = 32

# ggml type id: (name, elements per block, bytes per block)
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17),
    40: ("NVFP4", 64, 36), 41: ("Q1_0", 128, 18),
}  # fmt: skip

# general.file_type (llama_ftype): what the file was quantised to
FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
    38: "MXFP4_MOE", 39: "NVFP4", 40: "Q1_0",
}  # fmt: skip

# GGUF value type id: struct format of a scalar
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_STRING = 8
_ARRAY = 9


def looks_like(prefix: bytes) -> bool:
    return prefix.startswith(MAGIC)


def parse(reader: WeightsReader, limits: Limits) -> ParsedWeights:
    """Parse a GGUF file; raises :class:`InvalidWeights` with the reason."""
    cursor = Cursor(reader)
    if reader.size < 24 or cursor.take(4) != MAGIC:
        raise InvalidWeights("no GGUF magic")
    version = cursor.u32()
    if version not in SUPPORTED_VERSIONS:
        swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
        if swapped in SUPPORTED_VERSIONS:
            raise InvalidWeights(f"big-endian GGUF version {swapped} is not supported")
        raise InvalidWeights(f"unsupported GGUF version {version}")
    n_tensors, n_kv = cursor.u64(), cursor.u64()
    if n_tensors > limits.max_tensors:
        raise InvalidWeights(f"{n_tensors} tensors, over the limit of {limits.max_tensors}")
    if n_kv > MAX_KEY_VALUES:
        raise InvalidWeights(f"{n_kv} key-values, over the limit of {MAX_KEY_VALUES}")
    values: dict[str, object] = {}
    for _ in range(n_kv):
        key = _string(cursor)
        value = _value(cursor, cursor.u32(), 0)
        if value is not None:
            values[key] = value
    infos = [_tensor_info(cursor) for _ in range(n_tensors)]
    alignment = values.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment % 8:
        raise InvalidWeights(f"general.alignment {alignment!r} is not a multiple of 8")
    data_start = -(-cursor.offset // alignment) * alignment
    tensors = [_place(info, data_start, alignment, reader.size) for info in infos]
    architecture = str(values.get("general.architecture", ""))
    file_type = values.get("general.file_type")
    context = values.get(f"{architecture}.context_length", 0)
    return ParsedWeights(
        valid=True,
        tensors=tuple(tensors),
        architecture=architecture,
        name=str(values.get("general.name", "")),
        quantisation=FILE_TYPES.get(file_type, str(file_type))
        if isinstance(file_type, int)
        else "",
        context_length=context if isinstance(context, int) else 0,
        metadata=keep_metadata(values),
    )


def _file_type(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return FILE_TYPES.get(value, f"file type {value}")
    return ""


def _string(cursor: Cursor) -> str:
    length = cursor.u64()
    if length > cursor.reader.size - cursor.offset:
        raise InvalidWeights(f"a {length}-byte string runs past the end of the file")
    return cursor.take(length).decode("utf-8", "replace")


def _value(cursor: Cursor, kind: int, depth: int) -> object:
    """One value; arrays are stepped over and give ``None``."""
    if kind in _SCALARS:
        return cursor.unpack(_SCALARS[kind])[0]
    if kind == _STRING:
        length = cursor.u64()
        if length > MAX_METADATA_VALUE_CHARS:
            cursor.skip(length)
            return None
        return cursor.take(length).decode("utf-8", "replace")
    if kind == _ARRAY:
        if depth >= MAX_ARRAY_NESTING:
            raise InvalidWeights(f"arrays nested deeper than {MAX_ARRAY_NESTING} levels")
        item_kind, count = cursor.u32(), cursor.u64()
        if item_kind in _SCALARS:
            cursor.skip(count * struct.calcsize("<" + _SCALARS[item_kind]))
        elif item_kind == _STRING:
            cursor.skip_strings(count)
        elif count:
            for _ in range(count):
                _value(cursor, item_kind, depth + 1)
        return None
    raise InvalidWeights(f"unknown GGUF value type {kind}")


def _tensor_info(cursor: Cursor) -> tuple[str, tuple[int, ...], int, int]:
    name = _string(cursor)
    n_dims = cursor.u32()
    check_rank(n_dims, f"tensor {name!r}")
    shape = tuple(cursor.u64() for _ in range(n_dims))
    return name, shape, cursor.u32(), cursor.u64()


def _place(
    info: tuple[str, tuple[int, ...], int, int], data_start: int, alignment: int, size: int
) -> TensorInfo:
    name, shape, type_id, offset = info
    if type_id not in GGML_TYPES:
        raise InvalidWeights(f"tensor {name!r}: unknown ggml type {type_id}")
    dtype, block, block_bytes = GGML_TYPES[type_id]
    elements = element_count(shape)
    if elements % block:
        raise InvalidWeights(f"tensor {name!r}: {elements} elements, not whole {dtype} blocks")
    nbytes = elements // block * block_bytes
    if offset % alignment:
        raise InvalidWeights(f"tensor {name!r}: data offset {offset} is not aligned")
    if data_start + offset + nbytes > size:
        raise InvalidWeights(
            f"data shorter than the header says: tensor {name!r} ends at byte "
            f"{data_start + offset + nbytes}, the file at byte {size}"
        )
    # GGUF lists dimensions innermost first; report them outermost first, as other formats do.
    return TensorInfo(name, dtype, tuple(reversed(shape)), nbytes, data_start + offset)
