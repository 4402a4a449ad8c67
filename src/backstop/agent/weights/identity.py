"""Model identity from the tensors themselves: ``model_id`` and ``structure_id``.

Each tensor contributes a record: its name, dtype, shape and the SHA-256 of a sample of its
data. Records are sorted by name, so neither the order of tensors, nor how they are split
across files, nor the number of shards, nor any file's metadata changes the result:

- ``structure_id`` = SHA-256 over ``name, dtype, shape`` of every tensor (fine-tunes of one
  architecture share it);
- ``model_id`` = SHA-256 over ``name, dtype, shape, sample digest`` of every tensor.

The sample of a tensor of ``nbytes`` bytes, in a model of ``n`` tensors: the per-tensor
budget is ``b = clamp(MODEL_SAMPLE_BYTES // n, MIN_TENSOR_SAMPLE_BYTES,
MAX_TENSOR_SAMPLE_BYTES)``; a tensor of at most ``b`` bytes is hashed whole, a larger one as
:data:`SAMPLE_POINTS` chunks of ``b // SAMPLE_POINTS`` bytes at evenly spaced offsets
``(nbytes - chunk) * i // (SAMPLE_POINTS - 1)`` within its data. The digest covers
``nbytes`` (8 bytes, little endian) then the chunks. Since ``n`` is at most
:data:`~backstop.agent.weights.model.MAX_TENSORS` and ``MAX_TENSORS *
MIN_TENSOR_SAMPLE_BYTES == MODEL_SAMPLE_BYTES``, sampling reads at most
:data:`MODEL_SAMPLE_BYTES` (4 MiB) per model, whatever its size; parsing adds each file's
header, at most :data:`~backstop.agent.weights.model.MAX_HEADER_BYTES`. The identity is
a fingerprint, not an integrity check: a change that falls outside every sample is not seen.
Tensors whose data cannot be read in place (compressed zip members, ONNX external data)
contribute ``unsampled`` and their size.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from backstop.agent.weights.model import MAX_TENSORS, MIB, TensorInfo
from backstop.agent.weights.reader import WeightsReader

MODEL_SAMPLE_BYTES = 4 * MIB
"""Most bytes of tensor data sampled per model."""
MAX_TENSOR_SAMPLE_BYTES = 64 * 1024
MIN_TENSOR_SAMPLE_BYTES = MODEL_SAMPLE_BYTES // MAX_TENSORS
SAMPLE_POINTS = 4
_VERSION = b"backstop model identity v1\n"

TensorRecord = tuple[str, str, tuple[int, ...], str]
"""``(name, dtype, shape, sample digest)``."""


def tensor_sample_bytes(tensor_count: int) -> int:
    """The per-tensor sample budget for a model of ``tensor_count`` tensors."""
    share = MODEL_SAMPLE_BYTES // max(tensor_count, 1)
    return max(MIN_TENSOR_SAMPLE_BYTES, min(MAX_TENSOR_SAMPLE_BYTES, share))


def sample_ranges(nbytes: int, budget: int) -> list[tuple[int, int]]:
    """``(offset, length)`` within a tensor's data of the bytes its digest covers."""
    if nbytes <= budget:
        return [(0, nbytes)] if nbytes else []
    chunk = max(budget // SAMPLE_POINTS, 1)
    span = nbytes - chunk
    return [(span * i // (SAMPLE_POINTS - 1), chunk) for i in range(SAMPLE_POINTS)]


def sample_file(
    path: Path, tensors: Sequence[TensorInfo], budget: int
) -> tuple[list[TensorRecord], int]:
    """The records of one file's tensors, and the bytes read to sample them."""
    records: list[TensorRecord] = []
    with WeightsReader(path, header_budget=0) as reader:
        for tensor in tensors:
            if tensor.offset is None:
                digest = f"unsampled:{tensor.nbytes}"
            else:
                h = hashlib.sha256(tensor.nbytes.to_bytes(8, "little"))
                for start, length in sample_ranges(tensor.nbytes, budget):
                    h.update(reader.pread(length, tensor.offset + start))
                digest = h.hexdigest()
            records.append((tensor.name, tensor.dtype, tensor.shape, digest))
        return records, reader.bytes_read


def structure_id(records: Iterable[TensorRecord]) -> str:
    """SHA-256 over the sorted names, dtypes and shapes."""
    return _digest((name, dtype, shape, "") for name, dtype, shape, _ in records)


def model_id(records: Iterable[TensorRecord]) -> str:
    """SHA-256 over the sorted names, dtypes, shapes and sample digests."""
    return _digest(records)


def _digest(records: Iterable[TensorRecord]) -> str:
    h = hashlib.sha256(_VERSION)
    for name, dtype, shape, sample in sorted(records):
        line = json.dumps([name, dtype, shape, sample], ensure_ascii=True) + "\n"
        h.update(line.encode())
    return h.hexdigest()
