"""Weights files for tests, written with the standard library only, and reference hashes.

The reference functions restate the hashing rules of ``backstop.agent.fingerprint.weights``
in the plainest way (read whole chunks with seek/read), independently of the code under test.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

CHUNK = 64 * 1024
CHUNKS = 16


def safetensors_header(tensors: int = 2) -> bytes:
    """A JSON safetensors header describing ``tensors`` float32 tensors of 4x4."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    for i in range(tensors):
        header[f"layer.{i}.weight"] = {
            "dtype": "F32",
            "shape": [4, 4],
            "data_offsets": [i * 64, (i + 1) * 64],
        }
    return json.dumps(header, separators=(",", ":")).encode()


def write_safetensors(path: Path, header: bytes, data: bytes, *, total_size: int = 0) -> Path:
    """Write a safetensors file; ``total_size`` extends it sparsely to that size."""
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + data)
        if total_size:
            f.truncate(total_size)
    return path


def reference_sampled_sha256(path: Path) -> str:
    size = path.stat().st_size
    digest = hashlib.sha256(size.to_bytes(8, "little"))
    with path.open("rb") as f:
        for i in range(CHUNKS):
            f.seek(max(size - CHUNK, 0) * i // (CHUNKS - 1))
            digest.update(f.read(CHUNK))
    return digest.hexdigest()


def reference_model_hash(sampled: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(set(sampled))).encode()).hexdigest()
