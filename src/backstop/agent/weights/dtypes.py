"""Tensor element types: one canonical name per type, whatever format declared it.

Canonical names are the safetensors ones (``F32``, ``BF16``, ``I64`` ...) plus GGUF's block
quantisations (``Q4_K``, ``IQ2_XS`` ...). Each name knows its storage cost, so a tensor's
byte length follows from its shape; the same weights in safetensors, a PyTorch checkpoint or
ONNX therefore hash alike.
"""

from __future__ import annotations

from backstop.agent.weights.model import MAX_DIMS, InvalidWeights, element_count

# canonical dtype: bits per element
ELEMENT_BITS: dict[str, int] = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "F64": 64,
    "I64": 64,
    "U64": 64,
    "C64": 64,
    "C128": 128,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}

TORCH_STORAGES: dict[str, str] = {
    "FloatStorage": "F32",
    "DoubleStorage": "F64",
    "HalfStorage": "F16",
    "BFloat16Storage": "BF16",
    "LongStorage": "I64",
    "IntStorage": "I32",
    "ShortStorage": "I16",
    "CharStorage": "I8",
    "ByteStorage": "U8",
    "BoolStorage": "BOOL",
    "ComplexFloatStorage": "C64",
    "ComplexDoubleStorage": "C128",
    "UntypedStorage": "U8",
}

ONNX_TYPES: dict[int, str] = {
    1: "F32",
    2: "U8",
    3: "I8",
    4: "U16",
    5: "I16",
    6: "I32",
    7: "I64",
    9: "BOOL",
    10: "F16",
    11: "F64",
    12: "U32",
    13: "U64",
    14: "C64",
    15: "C128",
    16: "BF16",
    17: "F8_E4M3",
    19: "F8_E5M2",
}


def tensor_bytes(dtype: str, shape: tuple[int, ...]) -> int:
    """Bytes a dense tensor of ``dtype`` and ``shape`` occupies."""
    bits = ELEMENT_BITS.get(dtype)
    if bits is None:
        raise InvalidWeights(f"unknown dtype {dtype!r}")
    return (element_count(shape) * bits + 7) // 8


def check_rank(dims: int, what: str) -> None:
    """Refuse a tensor of more than :data:`~backstop.agent.weights.model.MAX_DIMS` dimensions
    (``what`` names it in the reason)."""
    if dims > MAX_DIMS:
        raise InvalidWeights(f"{what}: {dims} dimensions, over the limit of {MAX_DIMS}")


def check_shape(value: object, max_dims: int, what: str) -> tuple[int, ...]:
    """A shape from untrusted input: a short list of non-negative integers."""
    if not isinstance(value, list | tuple) or len(value) > max_dims:
        raise InvalidWeights(f"{what}: shape is not a list of at most {max_dims} dimensions")
    shape: list[int] = []
    for dim in value:
        if isinstance(dim, bool) or not isinstance(dim, int) or not 0 <= dim < 1 << 62:
            raise InvalidWeights(f"{what}: shape has a dimension that is not a size: {dim!r}")
        shape.append(dim)
    return tuple(shape)
