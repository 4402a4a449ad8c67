"""What parsing weights finds: per file :class:`ParsedWeights`, per model :class:`ModelIdentity`.

Also owns the limits every parser honours (:class:`Limits`, with the defaults as constants)
and :class:`InvalidWeights`, the one error a parser raises to say why a file is not valid
weights. Parsers never return partial trust: a file is either valid with every field read
from it, or invalid with a reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

MIB = 1 << 20

MAX_HEADER_BYTES = 32 * MIB
"""Most bytes of header (JSON, GGUF key-values and tensor infos, zip directory and pickle,
ONNX fields) read from one file."""
MAX_JSON_BYTES = 16 * MIB
"""Most bytes of one JSON document (safetensors header, config.json, index.json)."""
MAX_JSON_DEPTH = 16
"""Deepest nesting of arrays and objects accepted in JSON (a safetensors header needs 3)."""
MAX_TENSORS = 262_144
"""Most tensors in one model (large mixture-of-experts checkpoints have about 100,000)."""
MAX_FILES = 4096
"""Most weights files grouped into one model."""
MAX_DIMS = 16
"""Most dimensions of one tensor."""
MAX_METADATA_ENTRIES = 256
"""Most metadata entries kept from a file (the rest are counted, not kept)."""
MAX_METADATA_VALUE_CHARS = 256
"""Metadata values are cut to this many characters."""


class InvalidWeights(Exception):
    """A file is not valid weights; the message is the reason reported."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what parsing may read and keep; the defaults suit real models."""

    max_header_bytes: int = MAX_HEADER_BYTES
    max_json_bytes: int = MAX_JSON_BYTES
    max_json_depth: int = MAX_JSON_DEPTH
    max_tensors: int = MAX_TENSORS
    max_files: int = MAX_FILES


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One tensor as its file declares it.

    ``offset`` is where its data starts in the file and ``nbytes`` its length; ``offset`` is
    ``None`` when the data cannot be read in place (compressed, or stored in another file).
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    offset: int | None = None

    @property
    def parameters(self) -> int:
        return element_count(self.shape)


@dataclass(frozen=True, slots=True)
class ParsedWeights:
    """One weights file, parsed: valid with its contents, or invalid with ``reason``.

    Parsers fill in what the file holds; :func:`~backstop.agent.weights.identify.parse_file`
    adds ``path``, ``format``, ``size_bytes`` and ``bytes_read``.
    """

    valid: bool
    path: str = ""
    format: str = ""
    reason: str = ""
    tensors: tuple[TensorInfo, ...] = ()
    architecture: str = ""
    name: str = ""
    quantisation: str = ""
    context_length: int = 0
    producer: str = ""
    opset: int = 0
    metadata: Mapping[str, str] = field(default_factory=dict)
    size_bytes: int = 0
    bytes_read: int = 0

    @property
    def parameters(self) -> int:
        return sum(t.parameters for t in self.tensors)

    @property
    def bytes_by_dtype(self) -> dict[str, int]:
        return bytes_by_dtype(self.tensors)


@dataclass(frozen=True, slots=True)
class ModelIdentity:
    """One model (one file or a group of shards), identified by its tensors.

    ``model_id`` hashes every tensor's name, dtype, shape and a sample of its data, so it
    survives re-sharding, re-ordering and edited metadata; ``structure_id`` hashes names,
    dtypes and shapes only, so fine-tunes of one architecture share it. Both are ``""`` when
    the model is not valid. ``files`` holds a result for every file, valid or not.
    """

    format: str
    valid: bool
    reason: str
    files: tuple[ParsedWeights, ...]
    tensors: int = 0
    parameters: int = 0
    bytes_by_dtype: Mapping[str, int] = field(default_factory=dict)
    architecture: str = ""
    model_type: str = ""
    name: str = ""
    quantisation: str = ""
    context_length: int = 0
    size_class: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    model_id: str = ""
    structure_id: str = ""
    bytes_read: int = 0


def element_count(shape: tuple[int, ...]) -> int:
    """Elements in a tensor of ``shape`` (1 for a scalar)."""
    count = 1
    for dim in shape:
        count *= dim
    return count


def bytes_by_dtype(tensors: tuple[TensorInfo, ...] | list[TensorInfo]) -> dict[str, int]:
    """Bytes of tensor data per dtype, dtypes in sorted order."""
    totals: dict[str, int] = {}
    for tensor in tensors:
        totals[tensor.dtype] = totals.get(tensor.dtype, 0) + tensor.nbytes
    return dict(sorted(totals.items()))


def size_class(parameters: int) -> str:
    """How models are named by size: ``"7B"``, ``"1.5B"``, ``"124M"``; ``""`` for none."""
    if parameters <= 0:
        return ""
    if parameters >= 10**9:
        billions = parameters / 10**9
        text = f"{billions:.1f}" if billions < 3 else f"{billions:.0f}"
        return text.removesuffix(".0") + "B"
    if parameters >= 10**6:
        return f"{parameters / 10**6:.0f}M"
    return f"{max(parameters // 1000, 1)}K"


def keep_metadata(items: Mapping[str, object]) -> dict[str, str]:
    """Metadata as short strings: at most :data:`MAX_METADATA_ENTRIES`, values cut short."""
    kept: dict[str, str] = {}
    for key, value in items.items():
        if len(kept) >= MAX_METADATA_ENTRIES:
            break
        kept[str(key)[:MAX_METADATA_VALUE_CHARS]] = str(value)[:MAX_METADATA_VALUE_CHARS]
    return kept
