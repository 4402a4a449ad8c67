"""Weights files for tests: written by the upstream libraries where they exist (safetensors,
gguf), and laid out by hand to the documented formats where they do not (PyTorch zip
checkpoints, ONNX protobuf), plus hostile files."""

from __future__ import annotations

import json
import pickle
import struct
import sys
import types
import zipfile
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from safetensors.numpy import save_file

Tensors = Mapping[str, np.ndarray]

_ST_DTYPES = {np.float32: "F32", np.float16: "F16", np.int64: "I64", np.uint8: "U8"}
_TORCH_STORAGES = {np.float32: "FloatStorage", np.float16: "HalfStorage", np.int64: "LongStorage"}
_ONNX_TYPES = {np.float32: 1, np.float16: 10, np.int64: 7}


def model_tensors(seed: int = 0, layers: int = 3) -> dict[str, np.ndarray]:
    """A small transformer-shaped state dict of random weights."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {
        "model.embed_tokens.weight": rng.standard_normal((64, 16)).astype(np.float32)
    }
    for layer in range(layers):
        prefix = f"model.layers.{layer}"
        tensors[f"{prefix}.attn.q_proj.weight"] = rng.standard_normal((16, 16)).astype(np.float32)
        tensors[f"{prefix}.mlp.up_proj.weight"] = rng.standard_normal((32, 16)).astype(np.float16)
        tensors[f"{prefix}.norm.weight"] = np.ones(16, dtype=np.float32)
    tensors["lm_head.weight"] = rng.standard_normal((64, 16)).astype(np.float32)
    return tensors


def write_safetensors(path: Path, tensors: Tensors, metadata: dict[str, str] | None = None) -> Path:
    """The safetensors library's own writer."""
    save_file(dict(tensors), str(path), metadata=metadata)
    return path


def write_safetensors_in_order(
    path: Path, tensors: Sequence[tuple[str, np.ndarray]], metadata: dict[str, str] | None = None
) -> Path:
    """A safetensors file with its data (and header keys) in the order given."""
    header: dict[str, Any] = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = 0
    for name, array in tensors:
        header[name] = {
            "dtype": _ST_DTYPES[array.dtype.type],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + array.nbytes],
        }
        offset += array.nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as out:
        out.write(struct.pack("<Q", len(raw)) + raw)
        for _, array in tensors:
            out.write(np.ascontiguousarray(array).tobytes())
    return path


def write_sharded(
    directory: Path, tensors: Tensors, shards: int, *, index: bool = True
) -> list[Path]:
    """``save_pretrained``'s layout: ``model-0000i-of-0000n.safetensors`` and an index."""
    directory.mkdir(parents=True, exist_ok=True)
    names = list(tensors)
    paths: list[Path] = []
    weight_map: dict[str, str] = {}
    for part in range(shards):
        file_name = f"model-{part + 1:05d}-of-{shards:05d}.safetensors"
        chunk = {n: tensors[n] for n in names[part::shards]}
        paths.append(write_safetensors(directory / file_name, chunk, {"format": "pt"}))
        weight_map.update(dict.fromkeys(chunk, file_name))
    if index:
        (directory / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map})
        )
    return paths


def write_gguf(
    path: Path,
    tensors: Tensors,
    *,
    arch: str = "llama",
    name: str = "tiny",
    file_type: int | None = None,
    quantised: Mapping[str, tuple[np.ndarray, gguf.GGMLQuantizationType]] | None = None,
) -> Path:
    """The gguf library's writer: metadata, a tokenizer array, tensors."""
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(name)
    writer.add_context_length(4096)
    if file_type is not None:
        writer.add_file_type(file_type)
    writer.add_token_list([f"tok{i}" for i in range(300)])
    for tensor_name, array in tensors.items():
        writer.add_tensor(tensor_name, array)
    for tensor_name, (data, kind) in (quantised or {}).items():
        writer.add_tensor(tensor_name, data, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def gguf_header(version: int = 3, n_tensors: int = 0, kvs: bytes = b"", n_kv: int = 0) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv) + kvs


def gguf_string(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(data)) + data


# --- PyTorch zip checkpoints, as torch.save lays them out --------------------------------


class _FakeStorage:
    def __init__(self, key: str, array: np.ndarray) -> None:
        self.key = key
        self.array = array


class _FakeTensor:
    def __init__(self, storage: _FakeStorage, shape: tuple[int, ...]) -> None:
        self.storage = storage
        self.shape = shape

    def __reduce__(self) -> tuple[Any, ...]:
        stride = tuple(int(np.prod(self.shape[i + 1 :])) for i in range(len(self.shape)))
        rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
        return (rebuild, (self.storage, 0, self.shape, stride, False, OrderedDict()))


@contextmanager
def _torch_names() -> Iterator[types.ModuleType]:
    """Stand-ins named ``torch.*Storage`` and ``torch._utils._rebuild_tensor_v2`` so that the
    pickler writes the GLOBALs torch writes; removed again afterwards."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args: object) -> None: ...

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2  # type: ignore[attr-defined]
    for storage in {*_TORCH_STORAGES.values()}:
        setattr(torch, storage, type(storage, (), {"__module__": "torch"}))
    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
    try:
        yield torch
    finally:
        for key, module in saved.items():
            if module is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = module


def torch_pickle(obj: object) -> tuple[bytes, dict[str, bytes]]:
    """``data.pkl`` bytes as torch.save writes them (protocol 2, storages as persistent ids),
    with the storages' bytes by key. ``obj`` holds numpy arrays where torch has tensors."""
    storages: dict[str, bytes] = {}

    with _torch_names() as torch:

        def convert(value: object) -> object:
            if isinstance(value, np.ndarray):
                storage = _FakeStorage(str(len(storages)), value)
                storages[storage.key] = np.ascontiguousarray(value).tobytes()
                return _FakeTensor(storage, tuple(value.shape))
            if isinstance(value, dict):
                return OrderedDict((k, convert(v)) for k, v in value.items())
            return value

        class Pickler(pickle.Pickler):
            def persistent_id(self, value: object) -> object:
                if isinstance(value, _FakeStorage):
                    kind = getattr(torch, _TORCH_STORAGES[value.array.dtype.type])
                    return ("storage", kind, value.key, "cpu", value.array.size)
                return None

        import io

        out = io.BytesIO()
        Pickler(out, protocol=2).dump(convert(obj))
    return out.getvalue(), storages


def write_torch_zip(
    path: Path,
    obj: object,
    *,
    pickled: bytes | None = None,
    storages: dict[str, bytes] | None = None,
    folder: str = "archive",
) -> Path:
    """A ``torch.save`` zip: ``<folder>/data.pkl``, ``data/<key>``, ``version``, ``byteorder``."""
    data, found = torch_pickle(obj) if pickled is None else (pickled, {})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{folder}/data.pkl", data)
        archive.writestr(f"{folder}/byteorder", "little")
        for key, raw in (storages if storages is not None else found).items():
            archive.writestr(f"{folder}/data/{key}", raw)
        archive.writestr(f"{folder}/version", "3\n")
    return path


# --- ONNX, protobuf by hand --------------------------------------------------------------


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def pb_field(number: int, value: int | bytes | str) -> bytes:
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def onnx_model(tensors: Tensors, *, producer: str = "pytorch", opset: int = 17) -> bytes:
    """A ``ModelProto`` with one node and the tensors as initializers (raw_data)."""
    node = pb_field(1, "x") + pb_field(2, "y") + pb_field(4, "Identity")
    graph = pb_field(1, node) + pb_field(2, "main")
    for name, array in tensors.items():
        dims = b"".join(pb_field(1, d) for d in array.shape)
        initializer = (
            dims
            + pb_field(2, _ONNX_TYPES[array.dtype.type])
            + pb_field(8, name)
            + pb_field(9, np.ascontiguousarray(array).tobytes())
        )
        graph += pb_field(5, initializer)
    opset_id = pb_field(1, "") + pb_field(2, opset)
    return (
        pb_field(1, 8)
        + pb_field(2, producer)
        + pb_field(3, "2.3")
        + pb_field(7, graph)
        + pb_field(8, opset_id)
        + pb_field(14, pb_field(1, "author") + pb_field(2, "tests"))
    )
