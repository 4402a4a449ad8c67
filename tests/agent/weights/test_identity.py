"""Model identity: the same weights however packaged give one model_id; any changed tensor
gives another with the same structure_id; reads stay within the stated bound."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from backstop.agent.weights import MAX_HEADER_BYTES, MODEL_SAMPLE_BYTES, identify, identify_models
from backstop.agent.weights.identity import (
    MAX_TENSOR_SAMPLE_BYTES,
    MIN_TENSOR_SAMPLE_BYTES,
    SAMPLE_POINTS,
    sample_ranges,
    tensor_sample_bytes,
)
from backstop.agent.weights.model import MAX_TENSORS, size_class
from tests.agent.weights.builders import (
    model_tensors,
    onnx_model,
    write_gguf,
    write_safetensors,
    write_safetensors_in_order,
    write_sharded,
    write_torch_zip,
)

MIB = 1 << 20


@pytest.fixture
def tensors() -> dict[str, np.ndarray]:
    return model_tensors()


@pytest.fixture
def single(tmp_path: Path, tensors: dict[str, np.ndarray]) -> Path:
    (tmp_path / "one").mkdir()
    return write_safetensors(tmp_path / "one" / "model.safetensors", tensors, {"format": "pt"})


def test_one_file_and_three_shards_with_an_index_are_one_model(
    tmp_path: Path, tensors: dict[str, np.ndarray], single: Path
) -> None:
    shards = write_sharded(tmp_path / "sharded", tensors, 3)
    whole = identify([single])
    # The workload has one shard open; the index brings in the others.
    sharded = identify([shards[1]])
    assert whole.valid, whole.reason
    assert sharded.valid, sharded.reason
    assert len(sharded.files) == 3
    assert sharded.model_id == whole.model_id
    assert sharded.structure_id == whole.structure_id
    assert sharded.tensors == whole.tensors == len(tensors)
    assert sharded.parameters == whole.parameters == sum(a.size for a in tensors.values())
    assert sharded.bytes_by_dtype == whole.bytes_by_dtype


def test_shards_are_grouped_by_name_without_an_index(
    tmp_path: Path, tensors: dict[str, np.ndarray], single: Path
) -> None:
    shards = write_sharded(tmp_path / "sharded", tensors, 4, index=False)
    result = identify([shards[0]])
    assert result.valid, result.reason
    assert [Path(f.path).name for f in result.files] == [p.name for p in shards]
    assert result.model_id == identify([single]).model_id


def test_reordered_tensors_and_edited_metadata_keep_the_model_id(
    tmp_path: Path, tensors: dict[str, np.ndarray], single: Path
) -> None:
    reordered = write_safetensors_in_order(
        tmp_path / "reordered.safetensors",
        list(reversed(list(tensors.items()))),
        {"format": "pt", "note": "repackaged, edited"},
    )
    from safetensors.numpy import load_file

    assert set(load_file(str(reordered))) == set(tensors)  # the library reads it
    assert identify([reordered]).model_id == identify([single]).model_id


def test_one_changed_tensor_changes_model_id_not_structure_id(
    tmp_path: Path, tensors: dict[str, np.ndarray], single: Path
) -> None:
    changed = dict(tensors)
    changed["model.layers.1.norm.weight"] = changed["model.layers.1.norm.weight"] * 1.01
    tuned = identify([write_safetensors(tmp_path / "tuned.safetensors", changed)])
    base = identify([single])
    assert tuned.valid
    assert tuned.model_id != base.model_id
    assert tuned.structure_id == base.structure_id


def test_a_renamed_or_reshaped_tensor_changes_both_ids(
    tmp_path: Path, tensors: dict[str, np.ndarray], single: Path
) -> None:
    renamed = dict(tensors)
    renamed["lm_head.w"] = renamed.pop("lm_head.weight")
    reshaped = dict(tensors)
    reshaped["lm_head.weight"] = reshaped["lm_head.weight"].reshape(16, 64)
    base = identify([single])
    for variant, name in ((renamed, "renamed"), (reshaped, "reshaped")):
        other = identify([write_safetensors(tmp_path / f"{name}.safetensors", variant)])
        assert other.model_id != base.model_id
        assert other.structure_id != base.structure_id


def test_the_same_weights_in_every_format_share_the_model_id(
    tmp_path: Path, tensors: dict[str, np.ndarray], single: Path
) -> None:
    (tmp_path / "m.onnx").write_bytes(onnx_model(tensors))
    others = [
        write_torch_zip(tmp_path / "pytorch_model.bin", tensors),
        tmp_path / "m.onnx",
        write_gguf(tmp_path / "m.gguf", tensors),
    ]
    base = identify([single])
    for path in others:
        result = identify([path])
        assert result.valid, result.reason
        assert result.model_id == base.model_id, path.name


def test_a_missing_shard_is_reported(tmp_path: Path, tensors: dict[str, np.ndarray]) -> None:
    shards = write_sharded(tmp_path / "sharded", tensors, 3)
    shards[2].unlink()
    result = identify([shards[0]])
    assert not result.valid
    assert shards[2].name in result.reason
    assert "cannot be read" in result.reason
    assert len(result.files) == 3
    assert [f.valid for f in result.files] == [True, True, False]
    assert result.model_id == ""


def test_an_index_that_disagrees_with_the_shards_is_reported(
    tmp_path: Path, tensors: dict[str, np.ndarray]
) -> None:
    shards = write_sharded(tmp_path / "sharded", tensors, 2)
    index = tmp_path / "sharded" / "model.safetensors.index.json"
    mapping = json.loads(index.read_text())
    name = next(iter(mapping["weight_map"]))
    other = next(v for v in {*mapping["weight_map"].values()} if v != mapping["weight_map"][name])
    mapping["weight_map"][name] = other
    index.write_text(json.dumps(mapping))
    result = identify([shards[0]])
    assert not result.valid
    assert "index puts tensor" in result.reason


def test_a_tensor_in_two_files_is_reported(tmp_path: Path, tensors: dict[str, np.ndarray]) -> None:
    first = write_safetensors(tmp_path / "a.safetensors", tensors)
    second = write_safetensors(
        tmp_path / "b.safetensors", {"lm_head.weight": tensors["lm_head.weight"]}
    )
    result = identify([first, second])
    assert not result.valid
    assert "'lm_head.weight' is in both" in result.reason


def test_config_json_describes_the_model(tmp_path: Path, single: Path) -> None:
    (single.parent / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["LlamaForCausalLM"],
                "model_type": "llama",
                "hidden_size": 16,
                "num_hidden_layers": 3,
                "max_position_embeddings": 8192,
                "torch_dtype": "bfloat16",
                "_name_or_path": "tests/tiny-llama",
                "rope_scaling": {"type": "linear", "factor": 2.0},
            }
        )
    )
    result = identify([single])
    assert result.architecture == "LlamaForCausalLM"
    assert result.model_type == "llama"
    assert result.name == "tests/tiny-llama"
    assert result.context_length == 8192
    assert result.metadata["config.num_hidden_layers"] == "3"
    assert result.metadata["format"] == "pt"
    assert result.model_id == identify([single]).model_id


def test_models_in_different_folders_are_identified_apart(
    tmp_path: Path, tensors: dict[str, np.ndarray], single: Path
) -> None:
    shards = write_sharded(tmp_path / "sharded", model_tensors(seed=1), 2)
    results = identify_models([single, *shards])
    assert len(results) == 2
    assert results[0].model_id != results[1].model_id
    assert results[0].structure_id == results[1].structure_id


def test_a_big_sparse_model_is_identified_within_the_read_bound(tmp_path: Path) -> None:
    """A 16 GiB model (sparse, so no disk) costs headers plus at most the sample budget."""
    header = {
        f"layer.{i}.weight": {
            "dtype": "BF16",
            "shape": [32768, 32768],
            "data_offsets": [i * 2 * 32768**2, (i + 1) * 2 * 32768**2],
        }
        for i in range(8)
    }
    raw = json.dumps(header).encode()
    path = tmp_path / "big.safetensors"
    with path.open("wb") as out:
        out.write(len(raw).to_bytes(8, "little") + raw)
    os.truncate(path, 8 + len(raw) + 8 * 2 * 32768**2)
    result = identify([path])
    assert result.valid, result.reason
    assert result.parameters == 8 * 32768**2
    assert result.size_class == "9B"
    assert result.bytes_read < 64 * 1024 + 8 * MAX_TENSOR_SAMPLE_BYTES + 4096
    assert result.bytes_read < MODEL_SAMPLE_BYTES + MAX_HEADER_BYTES


def test_a_change_at_a_sampled_place_is_seen(tmp_path: Path) -> None:
    big = np.random.default_rng(2).standard_normal(1 << 20).astype(np.float32)  # 4 MiB
    base = identify([write_safetensors(tmp_path / "a.safetensors", {"w": big})])
    changed = big.copy()
    changed[-1] += 1.0  # the last sample chunk ends at the tensor's last byte
    other = identify([write_safetensors(tmp_path / "b.safetensors", {"w": changed})])
    assert other.model_id != base.model_id


def test_the_sample_budget_holds_for_any_tensor_count() -> None:
    assert MAX_TENSORS * MIN_TENSOR_SAMPLE_BYTES == MODEL_SAMPLE_BYTES
    for count in (1, 7, 64, 1000, 100_000, MAX_TENSORS):
        budget = tensor_sample_bytes(count)
        assert count * budget <= max(MODEL_SAMPLE_BYTES, count * MAX_TENSOR_SAMPLE_BYTES)
        assert count * budget <= MODEL_SAMPLE_BYTES or budget == MAX_TENSOR_SAMPLE_BYTES
        ranges = sample_ranges(10**12, budget)
        assert len(ranges) == SAMPLE_POINTS
        assert sum(length for _, length in ranges) <= budget
        assert ranges[0][0] == 0
        assert ranges[-1][0] + ranges[-1][1] == 10**12
    assert sample_ranges(100, 4096) == [(0, 100)]
    assert sample_ranges(0, 4096) == []


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        (6_738_415_616, "7B"),
        (1_543_714_304, "1.5B"),
        (2_000_000_000, "2B"),
        (70_553_706_496, "71B"),
        (124_439_808, "124M"),
        (20_300, "20K"),
        (0, ""),
    ],
)
def test_size_class(parameters: int, expected: str) -> None:
    assert size_class(parameters) == expected


def test_a_hub_cache_blob_is_grouped_through_its_snapshot_names(
    tmp_path: Path, tensors: dict[str, np.ndarray], single: Path
) -> None:
    """The hub cache: contents in blobs/<hash>, names in snapshots/<rev>/ as symlinks."""
    built = write_sharded(tmp_path / "built", tensors, 2)
    repo = tmp_path / "hub" / "models--org--tiny"
    (repo / "blobs").mkdir(parents=True)
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    blobs = []
    for number, path in enumerate([*built, built[0].parent / "model.safetensors.index.json"]):
        blob = repo / "blobs" / f"{number:040x}"
        path.rename(blob)
        (snapshot / path.name).symlink_to(Path("../../blobs") / blob.name)
        blobs.append(blob)
    result = identify([blobs[1]])  # what /proc/PID/maps shows: the blob
    assert result.valid, result.reason
    assert [Path(f.path).name for f in result.files] == [p.name for p in built]
    assert result.model_id == identify([single]).model_id
