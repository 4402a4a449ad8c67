"""Behaviour classification: is a workload serving a model, training one, or something else?

:func:`classify` answers from two kinds of evidence: the *static facts* of a workload
(listening sockets, a serving framework, an ML library, weights open or mapped) and, once the
agent has seen enough of it, the *time shape* of its GPU utilisation
(:class:`~backstop.agent.fingerprint.behaviour_window.BehaviourWindow`). The decision:

1. strong static evidence stands, whatever the shape (:data:`STRONG_RULES`): a serving
   framework and a listening socket → serving [0.95 with weights open or mapped, else 0.90].
   A server that has had no requests for minutes looks idle, like a paused notebook, and
   must stay a server. A listening socket with weights but no serving framework is not
   strong: measured once the shape is known, it was a server less than half of the time
   (notebooks, paused models, batch and training jobs listen and hold weights too), so the
   shape decides there;
2. otherwise, with a window of at least
   :data:`~backstop.agent.fingerprint.behaviour_window.MIN_SAMPLES` samples, the time shape
   decides (:func:`by_shape`): a multinomial logistic model
   (:mod:`backstop.agent.fingerprint.behaviour_model`, fitted on synthetic traces by
   ``bench/behaviour_eval.py --fit``; fitting it only on the traces the strong rules leave
   to it measured no better) over the window's features and the static facts gives a
   probability per kind of workload (serving, training, batch work, a paused model, a
   miner-like load, a notebook), summed per behaviour; the likeliest behaviour is the answer
   and its probability the confidence, unless that is below :data:`UNKNOWN_BELOW`, when the
   answer is unknown [0.0];
3. with fewer samples (or no window) the static rules decide, tried in order, the first that
   applies winning (:data:`RULES`):

   a. the strong rules above, then a listening socket and weights → serving [0.80] (a model
      behind a port);
   b. a serving framework without a listening socket → serving [0.60] (still starting, or
      the listener lives in another process tree);
   c. sustained GPU utilisation ≥ :data:`TRAINING_UTIL_PCT` and no listening socket →
      training [0.70 when an ML library or weights back it up, else 0.60];
   d. a listening socket and some GPU utilisation → serving [0.50] (a custom server);
   e. no listening socket and GPU utilisation ≥ :data:`BUSY_UTIL_PCT` → other [0.40]
      (batch jobs, evaluation, partial training);
   f. known GPU utilisation below that → other [0.50] (an idle context: notebook, debugger);
   g. a listening socket only → other [0.30];
   h. no evidence at all → unknown [0.0].

``gpu_util_pct`` should be smoothed over several samples (the discovery loop passes an
exponential moving average), so one busy second does not make a server look like training.
Accuracy and calibration of the static rules, of the shape model alone and of this
combination are measured in ``docs/behaviour.md``.
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

    @classmethod
    def of(
        cls,
        listening_ports: Sequence[int],
        gpu_util_pct: float | None,
        has_weights: bool,
        framework: str,
    ) -> Evidence:
        """The evidence from :func:`classify`'s arguments."""
        return cls(
            listening=bool(listening_ports),
            util=gpu_util_pct,
            weights=has_weights,
            serving_framework=framework in SERVING_FRAMEWORKS,
            ml_library=framework in ML_LIBRARIES,
        )

    @property
    def training_util(self) -> bool:
        return self.util is not None and self.util >= TRAINING_UTIL_PCT

    @property
    def busy(self) -> bool:
        return self.util is not None and self.util >= BUSY_UTIL_PCT


_Rule = tuple[Callable[[Evidence], bool], Behaviour, float]

STRONG_RULES: tuple[_Rule, ...] = (
    (lambda e: e.serving_framework and e.listening and e.weights, Behaviour.SERVING, 0.95),
    (lambda e: e.serving_framework and e.listening, Behaviour.SERVING, 0.90),
)
"""Static evidence that stands whatever the time shape: (applies?, behaviour, confidence)."""

RULES: tuple[_Rule, ...] = (
    *STRONG_RULES,
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
"""The static rules of the module docstring, in order: (applies?, behaviour, confidence)."""


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


def by_rules(evidence: Evidence, rules: Sequence[_Rule] = RULES) -> tuple[Behaviour, float] | None:
    """The verdict of the first of ``rules`` that applies; ``None`` when none does."""
    for applies, behaviour, confidence in rules:
        if applies(evidence):
            return behaviour, confidence
    return None


def by_shape(window: BehaviourWindow, evidence: Evidence) -> tuple[Behaviour, float]:
    """The shape model's verdict, unknown [0.0] when below :data:`UNKNOWN_BELOW`."""
    per_shape = probabilities(model_inputs(window, evidence))
    per_class = dict.fromkeys(CLASSES, 0.0)
    for (_, behaviour), p in zip(SHAPES, per_shape, strict=True):
        per_class[behaviour] += p
    best = max(CLASSES, key=per_class.__getitem__)
    if per_class[best] < UNKNOWN_BELOW:
        return Behaviour.UNKNOWN, 0.0
    return best, round(per_class[best], 3)


def classify(
    listening_ports: Sequence[int],
    gpu_util_pct: float | None,
    has_weights: bool,
    framework: str,
    window: BehaviourWindow | None = None,
) -> tuple[Behaviour, float]:
    """``(behaviour, confidence in [0, 1])`` from the evidence; see the module docstring."""
    evidence = Evidence.of(listening_ports, gpu_util_pct, has_weights, framework)
    if window is None or len(window) < MIN_SAMPLES:
        return by_rules(evidence) or (Behaviour.UNKNOWN, 0.0)
    return by_rules(evidence, STRONG_RULES) or by_shape(window, evidence)
