"""Behaviour classification: is a workload serving a model, training one, or something else?

The heuristics, tried in order; the first that applies decides (confidence in brackets):

1. a serving framework (vLLM, TGI, ...) and a listening socket → serving [0.90, 0.95 with
   weights open or mapped];
2. a listening socket and weights → serving [0.80] (a model behind a port);
3. a serving framework without a listening socket → serving [0.60] (still starting, or the
   listener lives in another process tree);
4. sustained GPU utilisation ≥ :data:`TRAINING_UTIL_PCT` and no listening socket → training
   [0.70 when an ML library or weights back it up, else 0.60] (training keeps the GPU busy
   without waiting for requests);
5. a listening socket and some GPU utilisation → serving [0.50] (a custom server);
6. no listening socket and GPU utilisation ≥ :data:`BUSY_UTIL_PCT` → other [0.40] (batch
   jobs, evaluation, partial training);
7. known GPU utilisation below that → other [0.50] (an idle context: notebook, debugger);
8. a listening socket only → other [0.30];
9. no evidence at all → unknown [0.0].

``gpu_util_pct`` should be smoothed over several samples (the discovery loop passes an
exponential moving average), so one busy second does not make a server look like training.

With a :class:`~backstop.agent.fingerprint.behaviour_window.BehaviourWindow` of at least
:data:`~backstop.agent.fingerprint.behaviour_window.MIN_SAMPLES` samples, the time shape
decides instead: a multinomial logistic model (:mod:`backstop.agent.fingerprint.behaviour_model`,
fitted on synthetic traces by ``bench/behaviour_eval.py --fit``) over the window's features and
the static facts gives a probability per kind of workload (serving, training, batch work, a
paused model, a miner-like load, a notebook), summed per behaviour; the likeliest behaviour
is the answer and its probability the confidence, unless that is below
:data:`UNKNOWN_BELOW`, when the answer is unknown [0.0]. Accuracy and calibration of both
are in ``docs/behaviour.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from backstop.agent.fingerprint.behaviour_model import CLASSES, COEFFICIENTS, SHAPES
from backstop.agent.fingerprint.behaviour_window import MIN_SAMPLES, BehaviourWindow
from backstop.agent.fingerprint.framework import SERVING_FRAMEWORKS
from backstop.core.models import Behaviour

TRAINING_UTIL_PCT = 80.0
BUSY_UTIL_PCT = 30.0
ML_LIBRARIES = frozenset({"torch", "jax", "tensorflow", "transformers"})
UNKNOWN_BELOW = 0.6
"""The model's answers less likely than this are reported as unknown."""


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the classifier looks at, derived once from its arguments."""

    listening: bool
    util: float | None
    weights: bool
    serving_framework: bool
    ml_library: bool

    @property
    def training_util(self) -> bool:
        return self.util is not None and self.util >= TRAINING_UTIL_PCT

    @property
    def busy(self) -> bool:
        return self.util is not None and self.util >= BUSY_UTIL_PCT


_Rule = tuple[Callable[[Evidence], bool], Behaviour, float]

RULES: tuple[_Rule, ...] = (
    (lambda e: e.serving_framework and e.listening and e.weights, Behaviour.SERVING, 0.95),
    (lambda e: e.serving_framework and e.listening, Behaviour.SERVING, 0.90),
    (lambda e: e.listening and e.weights, Behaviour.SERVING, 0.80),
    (lambda e: e.serving_framework, Behaviour.SERVING, 0.60),
    (
        lambda e: e.training_util and not e.listening and (e.weights or e.ml_library),
        Behaviour.TRAINING,
        0.70,
    ),
    (lambda e: e.training_util and not e.listening, Behaviour.TRAINING, 0.60),
    (lambda e: e.listening and e.util is not None and e.util > 0, Behaviour.SERVING, 0.50),
    (lambda e: e.busy and not e.listening, Behaviour.OTHER, 0.40),
    (lambda e: e.util is not None and not e.listening, Behaviour.OTHER, 0.50),
    (lambda e: e.listening, Behaviour.OTHER, 0.30),
)
"""The heuristics of the module docstring, in order: (applies?, behaviour, confidence)."""


def model_inputs(window: BehaviourWindow, evidence: Evidence) -> tuple[float, ...]:
    """The model's inputs: the window's features, the static facts and their crossings."""
    shape = window.features()
    mean, _, idle, flat_out, _, crossings = shape[:6]
    listening = float(evidence.listening)
    return (
        *shape,
        listening,
        float(evidence.weights),
        float(evidence.serving_framework),
        float(evidence.ml_library),
        listening * idle,
        listening * crossings,
        listening * mean,
        listening * flat_out,
        listening * evidence.serving_framework,
        listening * evidence.weights,
        1.0,
    )


def probabilities(inputs: Sequence[float]) -> tuple[float, ...]:
    """Softmax of the model's scores, one per entry of ``SHAPES``."""
    scores = [sum(w * x for w, x in zip(row, inputs, strict=True)) for row in COEFFICIENTS]
    top = max(scores)
    exps = [math.exp(s - top) for s in scores]
    total = sum(exps)
    return tuple(e / total for e in exps)


def _rules(evidence: Evidence) -> tuple[Behaviour, float]:
    for applies, behaviour, confidence in RULES:
        if applies(evidence):
            return behaviour, confidence
    return Behaviour.UNKNOWN, 0.0


def classify(
    listening_ports: Sequence[int],
    gpu_util_pct: float | None,
    has_weights: bool,
    framework: str,
    window: BehaviourWindow | None = None,
) -> tuple[Behaviour, float]:
    """``(behaviour, confidence in [0, 1])`` from the evidence; see the module docstring."""
    evidence = Evidence(
        listening=bool(listening_ports),
        util=gpu_util_pct,
        weights=has_weights,
        serving_framework=framework in SERVING_FRAMEWORKS,
        ml_library=framework in ML_LIBRARIES,
    )
    if window is None or len(window) < MIN_SAMPLES:
        return _rules(evidence)
    per_shape = probabilities(model_inputs(window, evidence))
    per_class = dict.fromkeys(CLASSES, 0.0)
    for (_, behaviour), p in zip(SHAPES, per_shape, strict=True):
        per_class[behaviour] += p
    best = max(CLASSES, key=per_class.__getitem__)
    if per_class[best] < UNKNOWN_BELOW:
        return Behaviour.UNKNOWN, 0.0
    return best, round(per_class[best], 3)
