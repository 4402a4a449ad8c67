"""The Hugging Face layout around weights files: shards, ``*.index.json`` and ``config.json``.

A model saved by ``save_pretrained`` is a folder of ``model-00001-of-00008.safetensors``
shards, a ``model.safetensors.index.json`` whose ``weight_map`` says which shard holds each
tensor, and a ``config.json`` (architectures, model_type, sizes). :func:`group_shards` turns
the files a workload has open into whole models: every shard an index lists, or every
``-NNNNN-of-NNNNN`` sibling, or the file alone. JSON is read with the same limits as weights
headers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from backstop.agent.weights.bounded_json import load_json
from backstop.agent.weights.model import InvalidWeights, Limits
from backstop.agent.weights.reader import WeightsReader

INDEX_SUFFIX = ".index.json"
CONFIG_NAME = "config.json"
MAX_DIR_ENTRIES = 10_000
"""Most directory entries looked at when searching a folder for index files."""
_SHARD = re.compile(r"^(?P<stem>.+)-(?P<part>\d{5})-of-(?P<total>\d{5})(?P<suffix>\.[\w.]+)$")
CONFIG_KEYS = (
    "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "vocab_size", "max_position_embeddings", "torch_dtype",
    "num_local_experts", "n_routed_experts",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ShardGroup:
    """The files of one model; ``index`` is the index that listed them, if any."""

    files: tuple[Path, ...]
    index: Path | None = None
    weight_map: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HfConfig:
    architecture: str = ""
    model_type: str = ""
    name: str = ""
    quantisation: str = ""
    context_length: int = 0
    sizes: Mapping[str, str] = field(default_factory=dict)


def read_json(path: Path, limits: Limits) -> tuple[object, int]:
    """A small JSON file beside the weights, and the bytes read for it."""
    with WeightsReader(path, limits.max_json_bytes) as reader:
        if reader.size > limits.max_json_bytes:
            raise InvalidWeights(f"{path.name} is over {limits.max_json_bytes} bytes")
        data = reader.header(reader.size, 0)
        value = load_json(
            data, max_bytes=limits.max_json_bytes, max_depth=limits.max_json_depth, what=path.name
        )
        return value, reader.bytes_read


def read_index(path: Path, limits: Limits) -> tuple[dict[str, str], int]:
    """An index's ``weight_map`` (tensor name to shard file name) and the bytes read."""
    value, read = read_json(path, limits)
    return weight_map_from_json(value, path.name, limits), read


def read_config(directory: Path, limits: Limits) -> tuple[HfConfig | None, int]:
    """The ``config.json`` beside the weights (``None`` when absent), and the bytes read."""
    path = directory / CONFIG_NAME
    if not path.is_file():
        return None, 0
    try:
        value, read = read_json(path, limits)
    except (OSError, InvalidWeights):
        return None, 0
    return config_from_json(value), read


def config_from_json(value: object) -> HfConfig | None:
    """What a parsed ``config.json`` says of the model (``None`` when it is not an object)."""
    if not isinstance(value, dict):
        return None
    architectures = value.get("architectures")
    quant = value.get("quantization_config")
    context = value.get("max_position_embeddings", 0)
    return HfConfig(
        architecture=str(architectures[0])
        if isinstance(architectures, list) and architectures
        else "",
        model_type=str(value.get("model_type", "")),
        name=str(value.get("_name_or_path", "")),
        quantisation=str(quant.get("quant_method", "")) if isinstance(quant, dict) else "",
        context_length=context if isinstance(context, int) else 0,
        sizes={f"config.{k}": str(value[k]) for k in CONFIG_KEYS if k in value},
    )


def group_shards(paths: Sequence[Path], limits: Limits) -> tuple[list[ShardGroup], int]:
    """The models that ``paths`` belong to, each with all its shards; and the bytes read."""
    groups: dict[tuple[Path, ...], ShardGroup] = {}
    indexes: dict[Path, list[tuple[Path, ShardGroup]]] = {}
    read = 0
    for given in paths:
        path = snapshot_name(given)
        directory = path.parent
        if directory not in indexes:
            indexes[directory], cost = _indexes_in(directory, limits)
            read += cost
        group = next((g for _, g in indexes[directory] if path in g.files), None)
        if group is None:
            group = _siblings(path)
        groups.setdefault(group.files, group)
    return list(groups.values()), read


def snapshot_name(path: Path) -> Path:
    """The name a Hugging Face cache blob has in a snapshot, or ``path`` itself.

    The hub cache keeps file contents in ``<repo>/blobs/<hash>`` and names them through
    symbolic links in ``<repo>/snapshots/<revision>/``; a workload that opened a shard has the
    blob open. Its snapshot name is where the index, the other shards and ``config.json`` are.
    """
    if path.parent.name != "blobs":
        return path
    try:
        target = path.resolve()
        with os.scandir(path.parent.parent / "snapshots") as revisions:
            folders = [e.path for _, e in zip(range(MAX_DIR_ENTRIES), revisions, strict=False)]
        for folder in sorted(folders):
            with os.scandir(folder) as entries:
                for _, entry in zip(range(MAX_DIR_ENTRIES), entries, strict=False):
                    if entry.is_symlink() and Path(entry.path).resolve() == target:
                        return Path(entry.path)
    except OSError:
        return path
    return path


def _indexes_in(directory: Path, limits: Limits) -> tuple[list[tuple[Path, ShardGroup]], int]:
    found: list[tuple[Path, ShardGroup]] = []
    read = 0
    try:
        with os.scandir(directory) as entries:
            names = [e.name for _, e in zip(range(MAX_DIR_ENTRIES), entries, strict=False)]
    except OSError:
        return found, 0
    for name in sorted(n for n in names if n.endswith(INDEX_SUFFIX)):
        index = directory / name
        try:
            weight_map, cost = read_index(index, limits)
        except (OSError, InvalidWeights):
            continue
        read += cost
        files = tuple(directory / f for f in sorted(set(weight_map.values())))
        found.append((index, ShardGroup(files, index, weight_map)))
    return found, read


def index_name_for(shard_name: str) -> str:
    """The index ``save_pretrained`` writes beside a shard (``model-00001-of-00004.safetensors``
    -> ``model.safetensors.index.json``); ``""`` when the name is not a shard's."""
    match = _SHARD.match(shard_name)
    return f"{match['stem']}{match['suffix']}{INDEX_SUFFIX}" if match else ""


def weight_map_from_json(value: object, what: str, limits: Limits) -> dict[str, str]:
    """An index's ``weight_map`` (tensor name to shard file name), checked."""
    weight_map = value.get("weight_map") if isinstance(value, dict) else None
    if not isinstance(weight_map, dict) or not all(
        isinstance(v, str) and "/" not in v for v in weight_map.values()
    ):
        raise InvalidWeights(f"{what} has no weight_map of shard file names")
    if len(weight_map) > limits.max_tensors:
        raise InvalidWeights(f"{what} lists over {limits.max_tensors} tensors")
    return {str(k): v for k, v in weight_map.items()}


def _siblings(path: Path) -> ShardGroup:
    match = _SHARD.match(path.name)
    if match is None or int(match["total"]) < 1:
        return ShardGroup((path,))
    total = int(match["total"])
    names = (
        f"{match['stem']}-{part:05d}-of-{match['total']}{match['suffix']}"
        for part in range(1, total + 1)
    )
    return ShardGroup(tuple(path.parent / name for name in names))
