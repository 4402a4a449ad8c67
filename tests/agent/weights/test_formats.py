"""Each format's parser against files written by the upstream libraries (safetensors, gguf)
or laid out by hand to the documented format (PyTorch zip, ONNX)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf.constants import GGML_QUANT_SIZES

from backstop.agent.weights import parse_file
from backstop.agent.weights.gguf import FILE_TYPES, GGML_TYPES
from backstop.agent.weights.pickle_scan import scan
from tests.agent.weights.builders import (
    model_tensors,
    onnx_model,
    torch_pickle,
    write_gguf,
    write_safetensors,
    write_torch_zip,
)


def test_safetensors_tensors_dtypes_shapes_and_metadata(tmp_path: Path) -> None:
    tensors = model_tensors()
    tensors["step"] = np.array([7], dtype=np.int64)
    path = write_safetensors(tmp_path / "m.safetensors", tensors, {"format": "pt", "k": "v"})
    parsed = parse_file(path)
    assert parsed.valid, parsed.reason
    assert parsed.format == "safetensors"
    by_name = {t.name: t for t in parsed.tensors}
    assert set(by_name) == set(tensors)
    for name, array in tensors.items():
        assert by_name[name].shape == array.shape
        assert by_name[name].nbytes == array.nbytes
    assert by_name["step"].dtype == "I64"
    assert by_name["model.layers.0.mlp.up_proj.weight"].dtype == "F16"
    assert parsed.metadata == {"format": "pt", "k": "v"}
    assert parsed.parameters == sum(a.size for a in tensors.values())
    assert parsed.bytes_by_dtype["F16"] == sum(
        a.nbytes for a in tensors.values() if a.dtype == np.float16
    )
    assert parsed.size_bytes == path.stat().st_size


def test_gguf_metadata_and_tensor_infos(tmp_path: Path) -> None:
    tensors = {k: v for k, v in model_tensors().items() if v.dtype == np.float32}
    rng = np.random.default_rng(3)
    weights = rng.standard_normal((8, 64)).astype(np.float32)
    quantised = {
        "blk.0.ffn_down.weight": (
            gguf.quants.quantize(weights, gguf.GGMLQuantizationType.Q8_0),
            gguf.GGMLQuantizationType.Q8_0,
        )
    }
    path = write_gguf(
        tmp_path / "m.gguf",
        tensors,
        arch="qwen2",
        name="Tiny Qwen",
        file_type=int(gguf.LlamaFileType.MOSTLY_Q8_0),
        quantised=quantised,
    )
    parsed = parse_file(path)
    assert parsed.valid, parsed.reason
    assert parsed.format == "gguf"
    assert parsed.architecture == "qwen2"
    assert parsed.name == "Tiny Qwen"
    assert parsed.quantisation == "Q8_0"
    assert parsed.context_length == 4096
    assert "tokenizer.ggml.tokens" not in parsed.metadata  # arrays are stepped over
    by_name = {t.name: t for t in parsed.tensors}
    assert by_name["blk.0.ffn_down.weight"].dtype == "Q8_0"
    assert by_name["blk.0.ffn_down.weight"].shape == (8, 64)
    assert by_name["blk.0.ffn_down.weight"].nbytes == quantised["blk.0.ffn_down.weight"][0].nbytes
    assert by_name["lm_head.weight"].shape == (64, 16)
    assert parsed.parameters == sum(a.size for a in tensors.values()) + weights.size


def test_gguf_tables_match_the_gguf_library() -> None:
    for kind, (block, size) in GGML_QUANT_SIZES.items():
        assert GGML_TYPES[int(kind)] == (kind.name, block, size)
    for file_type in gguf.LlamaFileType:
        if file_type.name == "GUESSED":
            continue
        assert FILE_TYPES[int(file_type)] == file_type.name.removeprefix("MOSTLY_").removeprefix(
            "ALL_"
        )


def test_a_pytorch_zip_checkpoint_is_read_from_its_directory_and_data_pkl(tmp_path: Path) -> None:
    tensors = model_tensors()
    path = write_torch_zip(tmp_path / "pytorch_model.bin", {"state_dict": tensors, "epoch": 3})
    parsed = parse_file(path)
    assert parsed.valid, parsed.reason
    assert parsed.format == "pytorch"
    by_name = {t.name: t for t in parsed.tensors}
    assert set(by_name) == {f"state_dict.{n}" for n in tensors}
    assert by_name["state_dict.lm_head.weight"].shape == (64, 16)
    assert by_name["state_dict.model.layers.0.mlp.up_proj.weight"].dtype == "F16"
    assert parsed.metadata == {"version": "3", "byteorder": "little"}
    with zipfile.ZipFile(path) as archive:  # offsets point at the storages' bytes
        first = archive.read("archive/data/0")
    tensor = by_name["state_dict.model.embed_tokens.weight"]
    assert tensor.offset is not None
    assert path.read_bytes()[tensor.offset : tensor.offset + tensor.nbytes] == first


def test_a_storage_shorter_than_declared_is_reported(tmp_path: Path) -> None:
    pickled, storages = torch_pickle({"w": np.zeros(100, dtype=np.float32)})
    storages["0"] = storages["0"][:100]
    path = write_torch_zip(tmp_path / "m.pt", None, pickled=pickled, storages=storages)
    parsed = parse_file(path)
    assert not parsed.valid
    assert "data shorter than the header says" in parsed.reason


def test_a_missing_storage_is_reported(tmp_path: Path) -> None:
    pickled, _ = torch_pickle({"w": np.zeros(4, dtype=np.float32)})
    path = write_torch_zip(tmp_path / "m.pt", None, pickled=pickled, storages={})
    parsed = parse_file(path)
    assert not parsed.valid
    assert "not in the archive" in parsed.reason


def test_a_pickle_that_would_run_code_is_reported_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self) -> tuple[object, ...]:
            import os

            return (os.system, (f"touch {marker}",))

    import pickle

    pickled = pickle.dumps({"w": Exploit()}, protocol=2)
    path = write_torch_zip(tmp_path / "evil.pt", None, pickled=pickled, storages={})
    parsed = parse_file(path)
    assert not parsed.valid
    assert "posix.system" in parsed.reason or "os.system" in parsed.reason
    assert "not loaded" in parsed.reason
    assert not marker.exists()


@pytest.mark.parametrize(
    "pickled",
    [
        b"\x80\x02}q\x00(X\x01\x00\x00\x00a",  # cut short, no STOP
        b"\x80\x02cbuiltins\neval\nq\x00.",
        b"\x80\x02\x93.",  # STACK_GLOBAL on an empty stack
        b"\x80\x02(X\x01\x00\x00\x00ao.",  # OBJ: builds an instance
        b"not a pickle",
    ],
)
def test_bad_pickles_are_refused(pickled: bytes) -> None:
    from backstop.agent.weights.model import InvalidWeights

    with pytest.raises(InvalidWeights):
        scan(pickled, 100)


def test_legacy_pickle_checkpoints_are_reported_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "old.pt"
    path.write_bytes(b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.")
    parsed = parse_file(path)
    assert not parsed.valid
    assert "legacy PyTorch pickle" in parsed.reason


def test_onnx_producer_opset_and_initializers(tmp_path: Path) -> None:
    tensors = model_tensors()
    path = tmp_path / "m.onnx"
    path.write_bytes(onnx_model(tensors, producer="onnx-export", opset=18))
    parsed = parse_file(path)
    assert parsed.valid, parsed.reason
    assert parsed.format == "onnx"
    assert parsed.producer == "onnx-export"
    assert parsed.opset == 18
    assert parsed.metadata["author"] == "tests"
    by_name = {t.name: t for t in parsed.tensors}
    assert {n: t.shape for n, t in by_name.items()} == {n: a.shape for n, a in tensors.items()}
    assert by_name["model.layers.2.mlp.up_proj.weight"].dtype == "F16"
    raw = path.read_bytes()
    tensor = by_name["lm_head.weight"]
    assert tensor.offset is not None
    assert raw[tensor.offset : tensor.offset + tensor.nbytes] == tensors["lm_head.weight"].tobytes()


def test_onnx_raw_data_of_the_wrong_length_is_reported(tmp_path: Path) -> None:
    from tests.agent.weights.builders import pb_field

    initializer = pb_field(1, 4) + pb_field(2, 1) + pb_field(8, "w") + pb_field(9, b"\0" * 12)
    model = pb_field(1, 8) + pb_field(7, pb_field(5, initializer))
    path = tmp_path / "m.onnx"
    path.write_bytes(model)
    parsed = parse_file(path)
    assert not parsed.valid
    assert "raw_data has 12 bytes" in parsed.reason


def test_onnx_field_running_past_its_message_is_reported(tmp_path: Path) -> None:
    from tests.agent.weights.builders import pb_field

    model = pb_field(1, 8) + b"\x3a\xff\xff\x03" + b"\0" * 10  # graph of 65535 bytes, 10 present
    path = tmp_path / "m.onnx"
    path.write_bytes(model)
    parsed = parse_file(path)
    assert not parsed.valid
    assert "runs past" in parsed.reason
