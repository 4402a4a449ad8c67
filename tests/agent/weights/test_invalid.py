"""Invalid and hostile weights: every candidate gets a result saying why, read cost stays
bounded (asserted as bytes read, not time), and nothing in a file is trusted."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from backstop.agent.weights import MAX_HEADER_BYTES, Limits, identify, parse_file
from backstop.agent.weights.bounded_json import load_json, nesting_depth_exceeds
from backstop.agent.weights.model import InvalidWeights
from tests.agent.weights.builders import (
    gguf_header,
    gguf_string,
    model_tensors,
    write_gguf,
    write_safetensors,
)

MIB = 1 << 20
SMALL_READ = 256 * 1024
"""What refusing a hostile file may cost: a window or two of its first bytes."""


def safetensors_raw(
    path: Path, header: bytes, length: int | None = None, data: bytes = b""
) -> Path:
    size = len(header) if length is None else length
    path.write_bytes(struct.pack("<Q", size) + header + data)
    return path


def refused(path: Path, *fragments: str, limits: Limits | None = None) -> str:
    parsed = parse_file(path, limits)
    assert not parsed.valid, f"{path.name} was accepted"
    for fragment in fragments:
        assert fragment in parsed.reason, parsed.reason
    assert parsed.bytes_read <= SMALL_READ
    model = identify([path], limits)
    assert not model.valid
    assert model.model_id == ""
    assert model.structure_id == ""
    assert len(model.files) == 1
    return parsed.reason


def test_truncated_safetensors(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "m.safetensors", model_tensors())
    os.truncate(path, path.stat().st_size - 100)
    refused(path, "data shorter than the header says")


def test_corrupt_safetensors_header(tmp_path: Path) -> None:
    refused(safetensors_raw(tmp_path / "m.safetensors", b"{not json"), "is not JSON")
    refused(safetensors_raw(tmp_path / "m.safetensors", b"{not json}"), "is not JSON")
    refused(safetensors_raw(tmp_path / "m.safetensors", b"[1, 2]"), "not a JSON object")


def test_safetensors_header_length_two_to_the_sixty(tmp_path: Path) -> None:
    path = safetensors_raw(tmp_path / "m.safetensors", b'{"a": 1}', length=1 << 60)
    refused(path, "header length 1152921504606846976", "over the limit")


def test_safetensors_header_longer_than_the_file(tmp_path: Path) -> None:
    path = safetensors_raw(tmp_path / "m.safetensors", b'{"a": 1}', length=1 << 20)
    refused(path, "runs past the end")


def test_deeply_nested_json(tmp_path: Path) -> None:
    depth = 1_000_000
    header = b'{"a": ' + b"[" * depth + b"]" * depth + b"}"
    path = safetensors_raw(tmp_path / "m.safetensors", header)
    parsed = parse_file(path)
    assert not parsed.valid
    assert "nests deeper than 16 levels" in parsed.reason
    assert parsed.bytes_read <= len(header) + 8 + SMALL_READ


def test_a_million_tensors_declared_in_gguf(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(gguf_header(n_tensors=1_000_000) + b"\0" * 64)
    refused(path, "1000000 tensors, over the limit")


def test_too_many_safetensors_tensors(tmp_path: Path) -> None:
    header = {
        f"t{i}": {"dtype": "U8", "shape": [1], "data_offsets": [i, i + 1]} for i in range(101)
    }
    path = safetensors_raw(
        tmp_path / "m.safetensors", json.dumps(header).encode(), data=b"\0" * 101
    )
    assert parse_file(path).valid
    refused(path, "101 tensors, over the limit of 100", limits=Limits(max_tensors=100))


def test_safetensors_offsets_that_disagree_with_the_shape(tmp_path: Path) -> None:
    header = {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}
    path = safetensors_raw(tmp_path / "m.safetensors", json.dumps(header).encode(), data=b"\0" * 16)
    refused(path, "8 bytes of data, but F32 [4] needs 16")


def test_overlapping_safetensors_tensors(tmp_path: Path) -> None:
    header = {
        "a": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]},
        "b": {"dtype": "U8", "shape": [8], "data_offsets": [4, 12]},
    }
    path = safetensors_raw(tmp_path / "m.safetensors", json.dumps(header).encode(), data=b"\0" * 16)
    refused(path, "overlaps")


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ({"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}, "unknown dtype"),
        ({"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}, "not a size"),
        ({"dtype": "F32", "shape": "1", "data_offsets": [0, 4]}, "shape is not a list"),
        ({"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}, "data_offsets"),
        ({"shape": [1], "data_offsets": [0, 4]}, "no dtype"),
        ([1, 2], "entry is not an object"),
    ],
)
def test_bad_safetensors_entries(tmp_path: Path, entry: object, fragment: str) -> None:
    path = safetensors_raw(
        tmp_path / "m.safetensors", json.dumps({"w": entry}).encode(), data=b"\0" * 8
    )
    refused(path, fragment)


def test_wrong_magic(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUX" + b"\0" * 60)
    refused(path, "wrong magic")
    pt = tmp_path / "m.pt"
    pt.write_bytes(b"\x00\x01 nothing like a checkpoint")
    refused(pt, "wrong magic")
    model = tmp_path / "m.onnx"
    model.write_bytes(b"\x07 not protobuf")
    refused(model, "wrong magic")


@pytest.mark.parametrize("version", [1, 4, 0x7FFFFFFF])
def test_unsupported_gguf_version(tmp_path: Path, version: int) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(gguf_header(version=version) + b"\0" * 64)
    refused(path, f"unsupported GGUF version {version}")


def test_big_endian_gguf(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF" + struct.pack(">IQQ", 3, 0, 0) + b"\0" * 64)
    refused(path, "big-endian")


def test_truncated_gguf(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf", {"w": np.ones((64, 64), dtype=np.float32)})
    os.truncate(path, path.stat().st_size - 1)
    refused(path, "data shorter than the header says")
    os.truncate(path, 200)
    refused(path, "file ends")


def test_gguf_string_of_length_two_to_the_sixty_two(tmp_path: Path) -> None:
    kv = struct.pack("<Q", 1 << 62) + b"general.name"
    path = tmp_path / "m.gguf"
    path.write_bytes(gguf_header(n_kv=1, kvs=kv) + b"\0" * 64)
    refused(path, "runs past the end of the file")


def test_gguf_array_of_endless_strings_stops_at_the_header_budget(tmp_path: Path) -> None:
    """An array declaring 2^40 strings over a 48 MiB sparse file stops at the budget."""
    kv = gguf_string("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 1 << 40)
    path = tmp_path / "m.gguf"
    path.write_bytes(gguf_header(n_kv=1, kvs=kv))
    os.truncate(path, 48 * MIB)  # zeros: empty strings, forever
    parsed = parse_file(path)
    assert not parsed.valid
    assert "header over the limit" in parsed.reason
    assert parsed.bytes_read <= MAX_HEADER_BYTES + 64 * 1024


def test_gguf_arrays_nested_too_deeply(tmp_path: Path) -> None:
    kv = gguf_string("x") + struct.pack("<I", 9) + struct.pack("<IQ", 9, 1) * 10
    path = tmp_path / "m.gguf"
    path.write_bytes(gguf_header(n_kv=1, kvs=kv) + b"\0" * 64)
    refused(path, "arrays nested deeper")


def test_gguf_unknown_tensor_type(tmp_path: Path) -> None:
    info = gguf_string("w") + struct.pack("<IQIQ", 1, 32, 99, 0)
    path = tmp_path / "m.gguf"
    path.write_bytes(gguf_header(n_tensors=1, kvs=info) + b"\0" * 256)
    refused(path, "unknown ggml type 99")


def test_empty_missing_and_unreadable_candidates(tmp_path: Path) -> None:
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    refused(empty, "too short")
    missing = identify([tmp_path / "gone.safetensors"])
    assert not missing.valid
    assert "cannot be read" in missing.reason
    folder = tmp_path / "dir.safetensors"
    folder.mkdir()
    assert "not a regular file" in parse_file(folder).reason
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    refused(other, "not a recognised weights format")


def test_a_zip_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "m.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hi")
    refused(path, "not a torch.save checkpoint")
    path.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    refused(path, "not a readable zip archive")


def test_nesting_depth_is_measured_without_recursion() -> None:
    assert not nesting_depth_exceeds(b'{"a": [1, [2]], "b": {"c": "[[[[["}}', 3)
    assert nesting_depth_exceeds(b'{"a": [1, [2]]}', 2)
    assert nesting_depth_exceeds(b"[" * 10, 16)  # unbalanced: not handed to json.loads
    with pytest.raises(InvalidWeights, match="do not pair up"):
        load_json(b"[" * 100, max_bytes=1000, max_depth=4, what="x")
    assert load_json(b'{"s": "\\"]]]"}', max_bytes=100, max_depth=1, what="x") == {"s": '"]]]'}
    with pytest.raises(InvalidWeights, match="over the limit"):
        load_json(b"[]" * 100, max_bytes=10, max_depth=4, what="x")


def test_a_zip_directory_over_the_header_budget(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "m.pt"
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(20_000):
            archive.writestr(f"archive/data/{i}", b"")
    parsed = parse_file(path, Limits(max_header_bytes=256 * 1024))
    assert not parsed.valid
    assert "header over the limit" in parsed.reason
    assert parsed.bytes_read <= 256 * 1024


def test_a_compressed_data_pkl_is_not_inflated_past_the_limit(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "m.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", b"\0" * (64 * MIB))
    assert path.stat().st_size < MIB
    refused(
        path, "archive/data.pkl is 67108864 bytes, over 1048576", limits=Limits(max_json_bytes=MIB)
    )
