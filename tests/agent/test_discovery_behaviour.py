"""Discovery feeds each workload's utilisation window to the behaviour class.

Real child processes, listed on a GPU as NVML would list them, sampled once per discovery
pass with a utilisation pattern (as the sampler passes NVML's readings): until the window
holds ``MIN_SAMPLES`` samples the static rules decide, from then on the time shape does,
except where strong static evidence (a serving framework with a listener) says serving.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from pathlib import Path

from backstop.agent.collectors.processes import ProcessCollector
from backstop.agent.discovery import WorkloadDiscovery
from backstop.agent.fingerprint.behaviour_window import MIN_SAMPLES, WINDOW_SAMPLES
from backstop.core.models import Behaviour, GpuProcess
from tests.agent.fingerprint.children import Child, Spawner
from tests.agent.fingerprint.samples import safetensors_header, write_safetensors

NODE = "node-a"
GPU_A = "GPU-aaaaaaaa-0000-0000-0000-000000000000"

IDLE = "import sys; print('ready', flush=True); sys.stdin.read()"

LISTENER = """
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
held = open(sys.argv[1], "rb") if len(sys.argv) > 1 else None
print(s.getsockname()[1], flush=True)
sys.stdin.read()
"""


def verdicts(
    child: Child, passes: int, util: Callable[[int], float]
) -> list[tuple[Behaviour, float]]:
    """The child's behaviour after each of ``passes`` discovery passes on GPU_A."""
    snapshot = ProcessCollector().collect()
    assert child.pid in snapshot.processes
    discovery = WorkloadDiscovery(NODE)
    gpu = [GpuProcess(GPU_A, child.pid, 4 << 30)]
    out = []
    for t in range(passes):
        workloads = discovery.discover(snapshot, gpu, {GPU_A: round(util(t))})
        (workload,) = [w for w in workloads if w.root_pid == child.pid]
        out.append((workload.fingerprint.behaviour, workload.fingerprint.behaviour_confidence))
    discovery.close()
    return out


def test_a_constant_flat_out_load_becomes_other_once_the_window_is_long_enough(
    spawner: Spawner,
) -> None:
    child = spawner.python(IDLE)
    child.read_line()
    rng = random.Random(1)

    seen = verdicts(child, MIN_SAMPLES + 5, lambda _: rng.uniform(99.0, 100.0))

    assert set(seen[: MIN_SAMPLES - 1]) == {(Behaviour.TRAINING, 0.60)}  # the moving average
    assert {b for b, _ in seen[MIN_SAMPLES - 1 :]} == {Behaviour.OTHER}  # the steady shape


def test_input_bound_training_becomes_training_once_the_window_is_long_enough(
    spawner: Spawner,
) -> None:
    child = spawner.python(IDLE)
    child.read_line()
    rng = random.Random(2)

    seen = verdicts(
        child,
        WINDOW_SAMPLES,
        lambda t: rng.uniform(0, 10) if t % 40 < 4 else min(100.0, rng.gauss(65.0, 12.0)),
    )

    assert seen[MIN_SAMPLES - 2] == (Behaviour.OTHER, 0.40)  # busy, below the training level
    assert seen[-1][0] is Behaviour.TRAINING  # steady work broken by regular dips


def test_a_quiet_vllm_server_stays_serving(spawner: Spawner, tmp_path: Path) -> None:
    weights = write_safetensors(tmp_path / "model.safetensors", safetensors_header(), b"\1" * 9000)
    program = tmp_path / "vllm"  # a serving framework, by its program's name
    program.write_text(LISTENER)
    child = spawner.command([sys.executable, str(program), str(weights)])
    child.read_line()

    seen = verdicts(child, WINDOW_SAMPLES, lambda t: 60.0 if t == 5 else 0.0)

    assert set(seen) == {(Behaviour.SERVING, 0.95)}


def test_a_quiet_listener_with_weights_is_left_to_the_shape_once_the_window_is_full(
    spawner: Spawner, tmp_path: Path
) -> None:
    weights = write_safetensors(tmp_path / "model.safetensors", safetensors_header(), b"\1" * 9000)
    child = spawner.python(LISTENER, str(weights))
    child.read_line()

    seen = verdicts(child, WINDOW_SAMPLES, lambda t: 60.0 if t == 5 else 0.0)

    assert set(seen[: MIN_SAMPLES - 1]) == {(Behaviour.SERVING, 0.80)}  # the rules
    assert seen[-1] != (Behaviour.SERVING, 0.80)  # the shape: idle, like a paused model
