"""Which model a workload serves, from the weights files it holds (``backstop.agent.weights``).

Serving frameworks open or map their shards one after another and often let go of each
once its tensors are on the GPU, so the agent cannot count on having a whole model open at
one moment. Each file is therefore identified on its own, once, while the process holds it:
parsed, and its tensors sampled with the per-tensor budget of the *whole* model (the tensor
count of the shard's index beside it, else the file's own), so the records are the ones
:func:`backstop.agent.weights.identify` would make for the model. A workload's identity is
then computed from the records of every file it has held, whichever order they came in.

Files are opened only through the links discovery verified (``/proc/PID/fd``,
``map_files``, or a root path whose device and inode match the mapping); what lies beside
them (the index, ``config.json``) is read through :mod:`backstop.agent.fingerprint.rootfs`,
inside the workload's root. Results are cached by ``(device, inode, size, mtime)``.
"""

from __future__ import annotations

import logging
import os
import posixpath
import stat
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from backstop.agent.fingerprint.rootfs import read_in_root
from backstop.agent.weights import Limits, parse_file
from backstop.agent.weights.bounded_json import load_json
from backstop.agent.weights.hf_layout import (
    CONFIG_NAME,
    HfConfig,
    config_from_json,
    index_name_for,
    weight_map_from_json,
)
from backstop.agent.weights.identity import (
    TensorRecord,
    model_id,
    sample_file,
    structure_id,
    tensor_sample_bytes,
)
from backstop.agent.weights.model import InvalidWeights, size_class
from backstop.agent.weights.reader import open_readonly
from backstop.core.models import IdentifiedModel

log = logging.getLogger(__name__)

MAX_WORKLOAD_TENSORS = 50_000
"""Tensor records kept per workload (about 150 bytes each); a model with more is reported
as over the agent's limit rather than identified from part of it."""

_Key = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class FileModel:
    """One weights file as identity needs it: what it declares and its tensor records."""

    key: _Key
    """``(device, inode, size, mtime_ns)``: which file, in which version."""
    path: str
    format: str
    valid: bool
    reason: str = ""
    size_bytes: int = 0
    parameters: int = 0
    records: tuple[TensorRecord, ...] = ()
    architecture: str = ""
    name: str = ""
    quantisation: str = ""
    context_length: int = 0
    config: HfConfig | None = None
    bytes_read: int = 0


class ModelIdentifier:
    """Identifies weights files once each, and workloads from the files they held."""

    def __init__(self, limits: Limits | None = None, cache_entries: int = 4096) -> None:
        self._limits = limits or Limits()
        self._files: OrderedDict[_Key, FileModel] = OrderedDict()
        self._cache_entries = cache_entries
        self._workloads: dict[tuple[_Key, ...], IdentifiedModel] = {}
        self._used: set[tuple[_Key, ...]] = set()
        self.bytes_read = 0

    def file(
        self,
        link: Path,
        display_path: str,
        root: Path,
        expected_id: tuple[int, int] | None = None,
    ) -> FileModel | None:
        """The file behind ``link`` (``None`` if gone or not the expected file); ``root`` is
        the workload's ``/proc/PID/root``, where its neighbours are looked for."""
        try:
            fd = open_readonly(link)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or (
                expected_id is not None and (st.st_dev, st.st_ino) != expected_id
            ):
                return None
            key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            cached = self._files.get(key)
            if cached is None:
                cached = self._identify_file(key, Path(f"/proc/self/fd/{fd}"), display_path, root)
                self._files[key] = cached
                if len(self._files) > self._cache_entries:
                    self._files.popitem(last=False)
            self._files.move_to_end(key)
            return cached
        finally:
            os.close(fd)

    def workload(self, files: Sequence[FileModel]) -> IdentifiedModel | None:
        """The model the files make up together (``None`` when there are none)."""
        if not files:
            return None
        key = tuple(sorted(f.key for f in files))
        self._used.add(key)
        found = self._workloads.get(key)
        if found is None:
            found = combine(files)
            self._workloads[key] = found
        return found

    def forget_unused(self) -> None:
        """Drop the workload identities not asked for since the last call."""
        for key in self._workloads.keys() - self._used:
            del self._workloads[key]
        self._used.clear()

    def _identify_file(self, key: _Key, fd_path: Path, display_path: str, root: Path) -> FileModel:
        parsed = parse_file(fd_path, self._limits)
        read = parsed.bytes_read
        directory = posixpath.dirname(display_path)
        config, cost = self._neighbour_config(root, directory)
        read += cost
        records: tuple[TensorRecord, ...] = ()
        if parsed.valid:
            total, cost = self._model_tensor_count(root, directory, display_path)
            read += cost
            sampled, cost = sample_file(
                fd_path, parsed.tensors, tensor_sample_bytes(total or len(parsed.tensors))
            )
            records, read = tuple(sampled), read + cost
        self.bytes_read += read
        return FileModel(
            key=key,
            path=display_path,
            format=parsed.format,
            valid=parsed.valid,
            reason=parsed.reason,
            size_bytes=parsed.size_bytes,
            parameters=parsed.parameters,
            records=records,
            architecture=parsed.architecture,
            name=parsed.name,
            quantisation=parsed.quantisation,
            context_length=parsed.context_length,
            config=config,
            bytes_read=read,
        )

    def _neighbour_json(self, root: Path, path: str) -> tuple[object, int]:
        data = read_in_root(root, path, self._limits.max_json_bytes)
        value = load_json(
            data,
            max_bytes=self._limits.max_json_bytes,
            max_depth=self._limits.max_json_depth,
            what=posixpath.basename(path),
        )
        return value, len(data)

    def _neighbour_config(self, root: Path, directory: str) -> tuple[HfConfig | None, int]:
        try:
            value, read = self._neighbour_json(root, posixpath.join(directory, CONFIG_NAME))
        except (OSError, InvalidWeights):
            return None, 0
        return config_from_json(value), read

    def _model_tensor_count(self, root: Path, directory: str, display_path: str) -> tuple[int, int]:
        """The tensors of the whole model, from the shard's index (``0``: no index)."""
        index = index_name_for(posixpath.basename(display_path))
        if not index:
            return 0, 0
        try:
            value, read = self._neighbour_json(root, posixpath.join(directory, index))
            return len(weight_map_from_json(value, index, self._limits)), read
        except (OSError, InvalidWeights) as exc:
            log.debug("no usable index beside %s: %s", display_path, exc)
            return 0, 0


def combine(files: Sequence[FileModel]) -> IdentifiedModel:
    """One identity for the tensors of all ``files``; invalid when any file is, or when a
    tensor appears twice (two models in one workload are not one model)."""
    ordered = sorted(files, key=lambda f: f.path)
    records = [r for f in ordered for r in f.records]
    parameters = sum(f.parameters for f in ordered)
    first = ordered[0]
    config = next((f.config for f in ordered if f.config is not None), None) or HfConfig()
    reason = _problem(ordered, records)
    return IdentifiedModel(
        model_id="" if reason else model_id(records),
        structure_id="" if reason else structure_id(records),
        architecture=first.architecture or config.architecture,
        name=first.name or config.name,
        parameters=parameters,
        formats=tuple(sorted({f.format for f in ordered if f.format})),
        quantisation=first.quantisation or config.quantisation,
        size_class=size_class(parameters),
        context_length=first.context_length or config.context_length,
        tensors=len(records),
        valid=not reason,
        invalid_reason=reason,
        bytes_read=sum(f.bytes_read for f in ordered),
    )


def _problem(files: Sequence[FileModel], records: Sequence[TensorRecord]) -> str:
    invalid = next((f for f in files if not f.valid), None)
    if invalid is not None:
        return f"{posixpath.basename(invalid.path)}: {invalid.reason}"
    if len(records) > MAX_WORKLOAD_TENSORS:
        return f"{len(records)} tensors, over the agent's limit of {MAX_WORKLOAD_TENSORS}"
    names = [r[0] for r in records]
    if len(set(names)) != len(names):
        return "the same tensor name is in two of its files (more than one model)"
    return ""
