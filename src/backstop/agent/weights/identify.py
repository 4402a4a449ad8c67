"""Identify the model a set of weights files holds: parse each file, group shards, hash.

:func:`parse_file` gives every candidate a :class:`ParsedWeights` (valid, or invalid with
the reason), choosing the parser by the file's first bytes and then by its name.
:func:`identify` treats the given files, with the shards they belong to, as one model and
returns its :class:`ModelIdentity`; :func:`identify_models` returns one per model found
among the files. A model is valid only when every file is, no tensor appears twice, and an
index's ``weight_map`` matches the tensors found. Reads per model are bounded as the
:mod:`backstop.agent.weights.identity` docstring states.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from backstop.agent.weights import gguf, onnx, pytorch_magic, safetensors
from backstop.agent.weights.hf_layout import HfConfig, group_shards, read_config
from backstop.agent.weights.identity import (
    TensorRecord,
    model_id,
    sample_file,
    structure_id,
    tensor_sample_bytes,
)
from backstop.agent.weights.model import (
    InvalidWeights,
    Limits,
    ModelIdentity,
    ParsedWeights,
    bytes_by_dtype,
    size_class,
)
from backstop.agent.weights.reader import WeightsReader

Parser = Callable[[WeightsReader, Limits], ParsedWeights]
_BY_SUFFIX: dict[str, tuple[str, Parser]] = {
    ".safetensors": (safetensors.FORMAT, safetensors.parse),
    ".gguf": (gguf.FORMAT, gguf.parse),
    ".onnx": (onnx.FORMAT, onnx.parse),
}
_PYTORCH_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt"}


def parse_file(path: Path, limits: Limits | None = None) -> ParsedWeights:
    """Parse one weights file; never raises for what the file holds."""
    limits = limits or Limits()
    try:
        reader = WeightsReader(path, limits.max_header_bytes)
    except (OSError, InvalidWeights) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        return ParsedWeights(False, str(path), reason=f"cannot be read: {reason}")
    with reader:
        fmt = ""
        try:
            prefix = reader.header(min(16, reader.size), 0)
            fmt, parser = _choose(path, prefix)
            parsed = parser(reader, limits)
        except InvalidWeights as exc:
            parsed = ParsedWeights(valid=False, reason=str(exc))
        except OSError as exc:
            parsed = ParsedWeights(valid=False, reason=f"read failed: {exc}")
        return replace(
            parsed,
            path=str(path),
            format=fmt,
            size_bytes=reader.size,
            bytes_read=reader.bytes_read,
        )


def _parse_pytorch(reader: WeightsReader, limits: Limits) -> ParsedWeights:
    from backstop.agent.weights import torch_zip  # heavy: with the first checkpoint

    return torch_zip.parse(reader, limits)


def _choose(path: Path, prefix: bytes) -> tuple[str, Parser]:
    if gguf.looks_like(prefix):
        return gguf.FORMAT, gguf.parse
    if pytorch_magic.looks_like(prefix):
        return pytorch_magic.FORMAT, _parse_pytorch
    if safetensors.looks_like(prefix):
        return safetensors.FORMAT, safetensors.parse
    suffix = path.suffix.lower()
    if suffix in _PYTORCH_SUFFIXES:
        if pytorch_magic.looks_like_legacy(prefix):
            raise InvalidWeights("legacy PyTorch pickle (not a zip archive): not parsed")
        raise InvalidWeights("wrong magic: neither a zip archive nor a pickle")
    if suffix == ".gguf":
        raise InvalidWeights("wrong magic: no GGUF magic")
    if suffix == ".onnx" and not onnx.looks_like(prefix):
        raise InvalidWeights("wrong magic: does not start with a protobuf field")
    if suffix in _BY_SUFFIX:
        return _BY_SUFFIX[suffix]
    raise InvalidWeights("not a recognised weights format")


def identify(paths: Sequence[Path], limits: Limits | None = None) -> ModelIdentity:
    """The identity of the one model held by ``paths`` and the shards they belong to."""
    limits = limits or Limits()
    groups, read = group_shards(paths, limits)
    files = list(dict.fromkeys(f for g in groups for f in g.files))
    weight_map = {k: v for g in groups for k, v in g.weight_map.items()}
    return _identify(files, weight_map, limits, read)


def identify_models(paths: Sequence[Path], limits: Limits | None = None) -> list[ModelIdentity]:
    """One identity per model among ``paths`` (shards grouped by index or by name)."""
    limits = limits or Limits()
    groups, read = group_shards(paths, limits)
    return [
        _identify(list(group.files), dict(group.weight_map), limits, read if i == 0 else 0)
        for i, group in enumerate(groups)
    ]


def _identify(
    files: list[Path], weight_map: dict[str, str], limits: Limits, read: int
) -> ModelIdentity:
    if len(files) > limits.max_files:
        return ModelIdentity("", False, f"{len(files)} files, over {limits.max_files}", ())
    parsed = tuple(parse_file(path, limits) for path in files)
    config, config_read = read_config(files[0].parent, limits) if files else (None, 0)
    read += config_read + sum(p.bytes_read for p in parsed)
    formats = sorted({p.format for p in parsed if p.format})
    tensors = [t for p in parsed for t in p.tensors]
    identity = ModelIdentity(
        format="+".join(formats),
        valid=False,
        reason=_problem(parsed, weight_map, limits),
        files=parsed,
        tensors=len(tensors),
        parameters=sum(t.parameters for t in tensors),
        bytes_by_dtype=bytes_by_dtype(tensors),
        bytes_read=read,
    )
    identity = _described(identity, parsed, config)
    if identity.reason:
        return identity
    budget = tensor_sample_bytes(len(tensors))
    records: list[TensorRecord] = []
    for path, file in zip(files, parsed, strict=True):
        file_records, cost = sample_file(path, file.tensors, budget)
        records += file_records
        read += cost
    return replace(
        identity,
        valid=True,
        model_id=model_id(records),
        structure_id=structure_id(records),
        bytes_read=read,
    )


def _problem(parsed: Sequence[ParsedWeights], weight_map: dict[str, str], limits: Limits) -> str:
    """Why the files are not one valid model; ``""`` when they are."""
    if not parsed:
        return "no weights files"
    invalid = next((f for f in parsed if not f.valid), None)
    if invalid is not None:
        return f"{Path(invalid.path).name}: {invalid.reason}"
    seen: dict[str, str] = {}
    for file in parsed:
        name = Path(file.path).name
        for tensor in file.tensors:
            if tensor.name in seen:
                return f"tensor {tensor.name!r} is in both {seen[tensor.name]} and {name}"
            seen[tensor.name] = name
    if len(seen) > limits.max_tensors:
        return f"{len(seen)} tensors, over the limit of {limits.max_tensors}"
    return _index_problem(seen, weight_map)


def _index_problem(seen: dict[str, str], weight_map: dict[str, str]) -> str:
    """Where an index's ``weight_map`` and the tensors found disagree; ``""`` if nowhere."""
    for name, shard in weight_map.items():
        if seen.get(name) != shard:
            return f"the index puts tensor {name!r} in {shard}, which does not hold it"
    if weight_map and len(weight_map) != len(seen):
        extra = next(t for t in seen if t not in weight_map)
        return f"tensor {extra!r} is in {seen[extra]} but not in the index"
    return ""


def _described(
    identity: ModelIdentity, parsed: Sequence[ParsedWeights], config: HfConfig | None
) -> ModelIdentity:
    """What the files and ``config.json`` say the model is; the files win."""
    first = parsed[0] if parsed else None
    config = config or HfConfig()
    metadata: dict[str, str] = {}
    for file in parsed:
        for key, value in file.metadata.items():
            metadata.setdefault(key, value)
    metadata.update(config.sizes)
    return replace(
        identity,
        architecture=(first.architecture if first else "") or config.architecture,
        model_type=config.model_type,
        name=(first.name if first else "") or config.name,
        quantisation=(first.quantisation if first else "") or config.quantisation,
        context_length=(first.context_length if first else 0) or config.context_length,
        size_class=size_class(identity.parameters),
        metadata=metadata,
    )
