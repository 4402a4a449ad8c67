"""Which model a real serving process holds: files written by the safetensors library, opened
by a real child process the way serving frameworks do (shard after shard, each let go once
loaded), identified by discovery as the weights library identifies the whole model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from backstop.agent.discovery import WorkloadDiscovery
from backstop.agent.weights import identify
from backstop.core.models import Workload
from tests.agent.conftest import FakeClock
from tests.agent.fingerprint.children import Child, Spawner
from tests.agent.test_discovery import discover_once
from tests.agent.weights.builders import model_tensors, write_safetensors, write_sharded

LOADER = """
import mmap, socket, sys
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()
print("ready", flush=True)
held = None
for line in sys.stdin:
    if held is not None:
        held.close()  # let the previous shard go, as a loader does once it is on the GPU
    f = open(line.strip(), "rb")
    try:
        held = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except ValueError:  # an empty file cannot be mapped: keep it open instead
        held = f
    else:
        f.close()
    print("held", flush=True)
"""


def _loader(spawner: Spawner) -> Child:
    child = spawner.python(LOADER)
    assert child.read_line() == "ready"
    return child


def _hold(child: Child, path: Path) -> None:
    assert child.popen.stdin is not None
    child.popen.stdin.write(f"{path}\n")
    child.popen.stdin.flush()
    assert child.read_line() == "held"


def _workload_of(discovery: WorkloadDiscovery, clock: FakeClock, pid: int) -> Workload:
    clock.now += 60  # past the rescan interval: the process's files are looked at again
    workloads, _ = discover_once(discovery)
    (found,) = [w for w in workloads if w.root_pid == pid]
    return found


@pytest.fixture
def discovery() -> tuple[WorkloadDiscovery, FakeClock]:
    clock = FakeClock()
    return WorkloadDiscovery("node-a", clock=clock), clock


def _many_tensors() -> dict[str, np.ndarray]:
    """Enough tensors, each larger than its sample, that a shard's own count would give a
    different per-tensor budget than the model's: only the index beside it says the total."""
    rng = np.random.default_rng(5)
    return {f"layers.{i}.weight": rng.standard_normal(8192).astype(np.float32) for i in range(200)}


@pytest.mark.parametrize("make", [model_tensors, _many_tensors], ids=["small", "budgeted"])
def test_shards_held_one_after_another_give_the_whole_models_id(
    spawner: Spawner,
    tmp_path: Path,
    discovery: tuple[WorkloadDiscovery, FakeClock],
    make: Callable[[], dict[str, np.ndarray]],
) -> None:
    tensors = make()
    single = write_safetensors(tmp_path / "model.safetensors", tensors)
    shards = write_sharded(tmp_path / "sharded", tensors, shards=3)
    whole = identify([single])
    assert whole.valid
    finder, clock = discovery
    loader = _loader(spawner)
    for shard in shards:
        _hold(loader, shard)
        workload = _workload_of(finder, clock, loader.pid)
    model = workload.fingerprint.model
    assert model is not None
    assert model.valid, model.invalid_reason
    assert model.model_id == whole.model_id  # as one file, as three shards
    assert model.structure_id == whole.structure_id
    assert model.parameters == whole.parameters == sum(int(a.size) for a in tensors.values())
    assert model.formats == ("safetensors",)
    assert {w.path for w in workload.fingerprint.weights} == {str(s) for s in shards}


def test_architecture_comes_from_the_config_beside_the_weights(
    spawner: Spawner, tmp_path: Path, discovery: tuple[WorkloadDiscovery, FakeClock]
) -> None:
    folder = tmp_path / "llama"
    folder.mkdir()
    path = write_safetensors(folder / "model.safetensors", model_tensors(seed=4))
    (folder / "config.json").write_text(
        '{"architectures": ["LlamaForCausalLM"], "model_type": "llama",'
        ' "_name_or_path": "meta-llama/Llama-3.1-8B", "max_position_embeddings": 8192}'
    )
    finder, clock = discovery
    loader = _loader(spawner)
    _hold(loader, path)
    model = _workload_of(finder, clock, loader.pid).fingerprint.model
    assert model is not None
    assert (model.architecture, model.name, model.context_length) == (
        "LlamaForCausalLM",
        "meta-llama/Llama-3.1-8B",
        8192,
    )


def test_a_file_that_does_not_parse_is_reported_invalid_not_dropped(
    spawner: Spawner, tmp_path: Path, discovery: tuple[WorkloadDiscovery, FakeClock]
) -> None:
    bad = tmp_path / "model.safetensors"
    bad.write_bytes((9).to_bytes(8, "little") + b"{not json" + b"\0" * 4096)
    finder, clock = discovery
    loader = _loader(spawner)
    _hold(loader, bad)
    workload = _workload_of(finder, clock, loader.pid)  # still a serving workload
    (weights,) = workload.fingerprint.weights
    assert weights.path == str(bad)
    assert weights.invalid_reason
    model = workload.fingerprint.model
    assert model is not None
    assert not model.valid
    assert model.model_id == ""
    assert "model.safetensors" in model.invalid_reason
