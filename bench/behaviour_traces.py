"""Labelled synthetic traces of GPU workloads, for measuring the behaviour classifier.

Each trace is one workload: static facts (listening ports, weights open, framework) and one
sample a second of GPU utilisation (%), GPU memory held (bytes) and bytes received (request
or collective traffic). Kinds and the behaviour they are labelled with:

- ``serving`` (serving): Poisson requests at a rate that drifts, each keeping the GPU busy
  for a while; idle gaps between them; a busy server is near flat out; one in four is quiet
  (a request every 10 to 50 s), one in five holds a steady level (continuous batching under
  steady traffic).
- ``training`` (training): steady high utilisation, a stall per step, a checkpoint dip at
  a period of its own; collective traffic; some are input-bound (lower, jumpy); some listen
  (rendezvous or metrics port).
- ``batch`` (other): offline inference, long blocks flat out with irregular gaps to load the
  next shard; some run a serving framework offline (no port); a few others export metrics.
- ``paused`` (other): a model loaded and held, 0 % with rare blips; some listen (a kernel).
- ``miner`` (other): constant 100 %, no traffic, no weights, no port.
- ``notebook`` (other): interactive, short bursts and long idle, often listening, often torch.

The facts are drawn so that kinds overlap where they do in practice: an idle server looks
like a paused notebook, a saturated server like training, an input-bound training job like
batch work. ``generate(n, seed)`` is deterministic for a seed.

    .venv/bin/python bench/behaviour_traces.py --count 600 --seed 1   # prints a summary
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from backstop.core.models import Behaviour

GIB = 1 << 30
KINDS = ("serving", "training", "batch", "paused", "miner", "notebook")
WEIGHTS = (0.25, 0.25, 0.15, 0.1, 0.08, 0.17)
TRUTH = {
    "serving": Behaviour.SERVING,
    "training": Behaviour.TRAINING,
    "batch": Behaviour.OTHER,
    "paused": Behaviour.OTHER,
    "miner": Behaviour.OTHER,
    "notebook": Behaviour.OTHER,
}


@dataclass(frozen=True, slots=True)
class Trace:
    """One workload: what the agent sees of it once, and its samples."""

    kind: str
    """One of :data:`KINDS`; the label is :data:`TRUTH` of it."""
    shape: str
    """How its samples were drawn: the kind, or for serving one of three load patterns."""
    ports: tuple[int, ...]
    has_weights: bool
    framework: str
    samples: tuple[Sample, ...]

    @property
    def truth(self) -> Behaviour:
        return TRUTH[self.kind]


class Sample(NamedTuple):
    """One second of a trace."""

    util_pct: float
    memory_bytes: int
    rx_bytes: int


def _noisy(rng: random.Random, value: float, sd: float) -> float:
    return min(100.0, max(0.0, value + rng.gauss(0.0, sd)))


def _serving_steady(rng: random.Random, n: int) -> list[tuple[float, float]]:
    """Continuous batching under steady traffic: a level, little else."""
    level, sd = rng.uniform(25, 95), rng.uniform(0.0, 6.0)
    return [(_noisy(rng, level, sd), rng.uniform(1e5, 1e7)) for _ in range(n)]


def _serving_quiet(rng: random.Random, n: int) -> list[tuple[float, float]]:
    return _requests(rng, n, rng.choice([0.02, 0.05, 0.1]))


def _serving(rng: random.Random, n: int) -> list[tuple[float, float]]:
    return _requests(rng, n, rng.choice([0.4, 1.0, 3.0, 8.0]))


def _requests(rng: random.Random, n: int, rate: float) -> list[tuple[float, float]]:
    busy_until: list[float] = []
    out = []
    for t in range(n):
        rate = max(0.005, rate * rng.lognormvariate(0.0, 0.05))
        arrivals = sum(1 for _ in range(20) if rng.random() < rate / 20)
        busy_until.extend(t + rng.lognormvariate(0.3, 0.8) for _ in range(arrivals))
        busy_until = [b for b in busy_until if b > t]
        load = len(busy_until)
        util = 0.0 if load == 0 else min(100.0, 35.0 + 20.0 * load)
        out.append(
            (
                _noisy(rng, util, 4.0) if load else rng.choice([0.0, 0.0, 0.0, 1.0]),
                arrivals * rng.uniform(2e3, 2e5),
            )
        )
    return out


def _training(rng: random.Random, n: int) -> list[tuple[float, float]]:
    input_bound = rng.random() < 0.2
    base = rng.uniform(45, 75) if input_bound else rng.uniform(85, 99)
    step = rng.randint(1, 6)
    period = rng.randint(20, 900)
    dip_len = rng.randint(3, 40)
    phase = rng.randint(0, period)
    collective = rng.choice([0.0, 0.0, 5e8, 2e9])
    out = []
    for t in range(n):
        if (t + phase) % period < dip_len:
            util = rng.uniform(0, 15)
        elif t % step == 0 and rng.random() < 0.5:
            util = base * rng.uniform(0.3, 0.8)
        else:
            util = _noisy(rng, base, 12.0 if input_bound else 3.0)
        out.append((util, collective * rng.uniform(0.7, 1.3)))
    return out


def _batch(rng: random.Random, n: int) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    level = rng.uniform(75, 100)
    while len(out) < n:
        out.extend((_noisy(rng, level, 5.0), 0.0) for _ in range(rng.randint(30, 600)))
        out.extend((rng.uniform(0, 10), rng.uniform(1e7, 1e9)) for _ in range(rng.randint(2, 90)))
    return out[:n]


def _paused(rng: random.Random, n: int) -> list[tuple[float, float]]:
    blip = rng.uniform(0.0, 0.03)
    return [(rng.uniform(5, 60) if rng.random() < blip else 0.0, 0.0) for _ in range(n)]


def _miner(rng: random.Random, n: int) -> list[tuple[float, float]]:
    level = rng.choice([100.0, 100.0, 99.0, rng.uniform(80, 98)])
    return [(_noisy(rng, level, 0.8), rng.uniform(0, 500)) for _ in range(n)]


def _notebook(rng: random.Random, n: int) -> list[tuple[float, float]]:
    out = []
    active = 0
    for _ in range(n):
        if active == 0 and rng.random() < 0.02:
            active = rng.randint(2, 60)
        if active:
            active -= 1
            out.append((_noisy(rng, rng.uniform(30, 100), 10.0), 0.0))
        else:
            out.append((0.0, 0.0))
    return out


SHAPES = {
    "serving": _serving,
    "serving_steady": _serving_steady,
    "serving_quiet": _serving_quiet,
    "training": _training,
    "batch": _batch,
    "paused": _paused,
    "miner": _miner,
    "notebook": _notebook,
}


def _facts(rng: random.Random, kind: str) -> tuple[tuple[int, ...], bool, str]:
    """(ports, weights open, framework) as a workload of ``kind`` shows them."""
    p = rng.random
    if kind == "serving":
        ports = (8000,) if p() < 0.93 else ()
        framework = rng.choice(["vllm", "tgi", "", "", "torch", "transformers"])
        return ports, p() < 0.75, framework
    if kind == "training":
        ports = (29500,) if p() < 0.2 else ()
        return ports, p() < 0.4, rng.choice(["torch", "torch", "jax", "", "transformers"])
    if kind == "batch":  # offline vLLM serves no port; others may export metrics
        framework = rng.choice(["torch", "vllm", "", "transformers"])
        ports = (9090,) if framework != "vllm" and p() < 0.25 else ()
        return ports, p() < 0.85, framework
    if kind == "paused":  # a notebook kernel or a stopped job; an idle server is serving
        ports = (8888,) if p() < 0.3 else ()
        return ports, p() < 0.6, rng.choice(["torch", "", "transformers"])
    if kind == "miner":
        return ((3333,) if p() < 0.05 else ()), False, ""
    ports = (8888,) if p() < 0.6 else ()
    return ports, p() < 0.35, rng.choice(["torch", "torch", "", "jax"])


def trace(rng: random.Random, kind: str, length: int) -> Trace:
    """One trace of ``kind`` with ``length`` samples."""
    ports, weights, framework = _facts(rng, kind)
    memory = 0 if kind == "miner" else int(rng.uniform(1, 70) * GIB)
    if kind == "miner":
        memory = int(rng.uniform(2, 8) * GIB)
    shape = kind
    if kind == "serving":
        shape = rng.choices(["serving", "serving_steady", "serving_quiet"], [0.55, 0.2, 0.25])[0]
    drawn = SHAPES[shape](rng, length)
    samples = tuple(Sample(round(u, 1), memory, int(rx)) for u, rx in drawn)
    return Trace(kind, shape, ports, weights, framework, samples)


def generate(count: int, seed: int) -> list[Trace]:
    """``count`` traces, kinds drawn by :data:`WEIGHTS`, 30 to 900 samples each."""
    rng = random.Random(seed)
    kinds = rng.choices(KINDS, weights=WEIGHTS, k=count)
    return [trace(rng, kind, rng.randint(30, 900)) for kind in kinds]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=600)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    traces = generate(args.count, args.seed)
    print(dict(Counter(t.kind for t in traces)))
    print(sum(len(t.samples) for t in traces), "samples")


if __name__ == "__main__":
    main()
