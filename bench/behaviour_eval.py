"""Behaviour classification: static rules, time-shape model and their combination, measured.

Traces come from ``bench/behaviour_traces.py``. ``--fit`` fits the model (multinomial
logistic regression, L2) on windows cut from a training set drawn with another seed, its
temperature on a calibration set drawn with a third, and writes
``src/backstop/agent/fingerprint/behaviour_model.py`` (deterministically: same seeds, same
file). ``--fit --left-to-shape`` fits it only on the traces that the strong static rules leave
to the time shape, to compare; ``--fit`` alone writes the model the agent ships.

Without ``--fit``, each held-out trace is classified once at its end, as the discovery loop
would after that many samples, by three classifiers: the old static rules (moving average of
utilisation), the shape model alone (the window decides whenever it is long enough), and the
combination the agent runs (:func:`backstop.agent.fingerprint.behaviour.classify` with the
window). Prints (or writes with ``--out``) a summary, then per classifier accuracy, per-class
precision, recall and F1, the confusion matrix, recall per trace kind and the calibration
table with its expected calibration error.

    .venv/bin/python bench/behaviour_eval.py --fit
    .venv/bin/python bench/behaviour_eval.py --out docs/behaviour.md
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import numpy as np
from behaviour_traces import KINDS, Trace, generate

from backstop.agent.fingerprint import behaviour
from backstop.agent.fingerprint.behaviour_model import CLASSES, SHAPES
from backstop.agent.fingerprint.behaviour_window import MIN_SAMPLES, BehaviourWindow
from backstop.agent.workload_record import UTIL_SMOOTHING
from backstop.core.models import Behaviour

ROOT = Path(__file__).resolve().parent.parent
TRAIN_SEED, TRAIN_COUNT = 1000, 1500
CALIBRATION_SEED, CALIBRATION_COUNT = 2000, 500
TEST_SEED, TEST_COUNT = 1, 600
MODEL_PATH = ROOT / "src/backstop/agent/fingerprint/behaviour_model.py"
PREDICTED = (*CLASSES, Behaviour.UNKNOWN)
SHAPE_NAMES = tuple(name for name, _ in SHAPES)
TO_CLASS = np.array([[float(b is c) for c in CLASSES] for _, b in SHAPES])
"""Shape probabilities times this: behaviour probabilities."""
BINS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.01)

Verdict = tuple[Behaviour, float]


def _evidence(t: Trace) -> behaviour.Evidence:
    return behaviour.Evidence.of(t.ports, None, t.has_weights, t.framework)


def _left_to_shape(t: Trace) -> bool:
    """Whether the strong static rules leave ``t`` to the time shape."""
    return behaviour.by_rules(_evidence(t), behaviour.STRONG_RULES) is None


def _replay(t: Trace) -> tuple[BehaviourWindow, float | None]:
    """The window and the moving average of utilisation at the end of ``t``."""
    window = BehaviourWindow()
    ema: float | None = None
    for s in t.samples:
        window.push(s.util_pct)
        ema = (
            s.util_pct if ema is None else UTIL_SMOOTHING * s.util_pct + (1 - UTIL_SMOOTHING) * ema
        )
    return window, ema


def old_rules(t: Trace) -> Verdict:
    _, ema = _replay(t)
    return behaviour.classify(t.ports, ema, t.has_weights, t.framework)


def shape_alone(t: Trace) -> Verdict:
    """The time shape whenever the window is long enough, the static rules before."""
    window, ema = _replay(t)
    if len(window) < MIN_SAMPLES:
        return behaviour.classify(t.ports, ema, t.has_weights, t.framework)
    evidence = behaviour.Evidence.of(t.ports, ema, t.has_weights, t.framework)
    return behaviour.by_shape(window, evidence)


def combined(t: Trace) -> Verdict:
    window, ema = _replay(t)
    return behaviour.classify(t.ports, ema, t.has_weights, t.framework, window)


def _temperature(w: np.ndarray, keep: Callable[[Trace], bool]) -> float:
    """The temperature that minimises log loss on a calibration set, at each trace's end."""
    rows, labels = [], []
    for t in filter(keep, generate(CALIBRATION_COUNT, CALIBRATION_SEED)):
        window = BehaviourWindow()
        for s in t.samples:
            window.push(s.util_pct)
        if len(window) >= MIN_SAMPLES:
            rows.append(behaviour.model_inputs(window, _evidence(t)))
            labels.append(CLASSES.index(t.truth))
    scores = np.array(rows) @ w.T

    def loss(temperature: float) -> float:
        z = scores / temperature
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p = (p / p.sum(axis=1, keepdims=True)) @ TO_CLASS
        return float(-np.log(p[np.arange(len(labels)), labels] + 1e-12).mean())

    return min((0.2 + 0.02 * i for i in range(70)), key=loss)


def fit(left_to_shape: bool = False) -> None:
    """Fit the model on all training traces, or on those the strong rules leave to it."""
    keep: Callable[[Trace], bool] = _left_to_shape if left_to_shape else (lambda _: True)
    rows, labels = [], []
    traces = [t for t in generate(TRAIN_COUNT, TRAIN_SEED) if keep(t)]
    for t in traces:
        window = BehaviourWindow()
        evidence = _evidence(t)
        for i, s in enumerate(t.samples, 1):
            window.push(s.util_pct)
            if i >= MIN_SAMPLES and (i % 60 == 0 or i == len(t.samples)):
                rows.append(behaviour.model_inputs(window, evidence))
                labels.append(SHAPE_NAMES.index(t.shape))
    x = np.array(rows)
    y = np.eye(len(SHAPES))[labels]
    w = np.zeros((len(SHAPES), x.shape[1]))
    l2 = 1e-3
    for _ in range(6000):
        scores = x @ w.T
        scores -= scores.max(axis=1, keepdims=True)
        p = np.exp(scores)
        p /= p.sum(axis=1, keepdims=True)
        grad = (p - y).T @ x / len(x) + l2 * w
        w -= 2.0 * grad
    w /= _temperature(w, keep)
    which = f"{TRAIN_COUNT} synthetic traces"
    if left_to_shape:
        which = f"the {len(traces)} of {TRAIN_COUNT} synthetic traces left to the time shape"
    body = "".join(
        "    (\n" + "".join(f"        {v:.4f},\n" for v in row) + "    ),\n" for row in w
    )
    MODEL_PATH.write_text(
        f'"""Coefficients of the behaviour model; written by ``bench/behaviour_eval.py --fit``.\n\n'
        f"Fitted on {which} (seed {TRAIN_SEED}), {len(x)} windows.\n"
        '"""\n\nfrom __future__ import annotations\n\n'
        "from backstop.core.models import Behaviour\n\n"
        "CLASSES = (Behaviour.SERVING, Behaviour.TRAINING, Behaviour.OTHER)\n"
        '"""The answers."""\n'
        "SHAPES = (\n"
        + "".join(f'    ("{name}", Behaviour.{b.name}),\n' for name, b in SHAPES)
        + ")\n"
        '"""The kinds of workload the model tells apart, and the behaviour of each."""\n'
        f"COEFFICIENTS: tuple[tuple[float, ...], ...] = (\n{body})\n"
        '"""One row of weights per entry of ``SHAPES``, over ``behaviour.model_inputs``."""\n'
    )
    print(f"fitted on {len(x)} windows; wrote {MODEL_PATH.relative_to(ROOT)}")


@dataclass(frozen=True)
class Scores:
    """What one classifier got right and wrong on the held-out traces."""

    pairs: tuple[tuple[Trace, Verdict], ...]

    @property
    def accuracy(self) -> float:
        return self.right(self.pairs) / len(self.pairs)

    @property
    def answered(self) -> tuple[tuple[Trace, Verdict], ...]:
        return tuple((t, v) for t, v in self.pairs if v[0] is not Behaviour.UNKNOWN)

    @staticmethod
    def right(pairs: Sequence[tuple[Trace, Verdict]]) -> int:
        return sum(v[0] is t.truth for t, v in pairs)

    def per_class(self, c: Behaviour) -> tuple[float, float, float, int]:
        """Precision, recall, F1 and the number of traces of class ``c``."""
        said = [t for t, v in self.pairs if v[0] is c]
        truly = [t for t, _ in self.pairs if t.truth is c]
        tp = sum(t.truth is c for t in said)
        precision = tp / len(said) if said else 0.0
        recall = tp / len(truly)
        f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
        return precision, recall, f1, len(truly)

    def bins(self) -> list[tuple[float, float, int, float, float]]:
        """Per non-empty confidence bin: (low, high, answers, mean confidence, accuracy)."""
        out = []
        for lo, hi in itertools.pairwise(BINS):
            in_bin = [(t, v) for t, v in self.answered if lo <= v[1] < hi]
            if in_bin:
                mean = sum(v[1] for _, v in in_bin) / len(in_bin)
                out.append((lo, hi, len(in_bin), mean, self.right(in_bin) / len(in_bin)))
        return out

    @property
    def ece(self) -> float:
        """Expected calibration error over the answered traces."""
        total = max(1, len(self.answered))
        return sum(abs(acc - mean) * k / total for _, _, k, mean, acc in self.bins())


def _section(name: str, about: str, scores: Scores) -> list[str]:
    n, answered = len(scores.pairs), scores.answered
    out = [
        f"### {name}",
        "",
        about,
        "",
        f"Accuracy {scores.accuracy:.3f} ({scores.right(scores.pairs)}/{n}; unknown counts as "
        f"wrong); answered {len(answered)}/{n}, of which right "
        f"{scores.right(answered) / max(1, len(answered)):.3f}.",
        "",
        "| class | precision | recall | F1 | traces |",
        "|---|---|---|---|---|",
    ]
    for c in CLASSES:
        precision, recall, f1, count = scores.per_class(c)
        out.append(f"| {c} | {precision:.3f} | {recall:.3f} | {f1:.3f} | {count} |")
    out += ["", "Confusion (rows: truth, columns: answer):", ""]
    out += ["| truth \\ answer | " + " | ".join(str(p) for p in PREDICTED) + " |"]
    out += ["|---" * (len(PREDICTED) + 1) + "|"]
    for c in CLASSES:
        counts = Counter(v[0] for t, v in scores.pairs if t.truth is c)
        out.append(f"| {c} | " + " | ".join(str(counts[p]) for p in PREDICTED) + " |")
    out += ["", "Recall per trace kind:", ""]
    out += ["| kind | right | traces |", "|---|---|---|"]
    for kind in KINDS:
        of_kind = [(t, v) for t, v in scores.pairs if t.kind == kind]
        out.append(
            f"| {kind} | {scores.right(of_kind) / max(1, len(of_kind)):.3f} | {len(of_kind)} |"
        )
    out += ["", "Calibration (answered traces; confidence bin vs observed accuracy):", ""]
    out += ["| confidence | answers | mean confidence | accuracy |", "|---|---|---|---|"]
    for lo, hi, k, mean, acc in scores.bins():
        out.append(f"| [{lo:.1f}, {min(hi, 1.0):.1f}) | {k} | {mean:.3f} | {acc:.3f} |")
    out += ["", f"Expected calibration error (answered traces): {scores.ece:.3f}."]
    return [*out, ""]


def _summary(results: dict[str, Scores]) -> list[str]:
    header = "| classifier | accuracy | answered | " + " | ".join(
        f"{c} P / R / F1" for c in CLASSES
    )
    out = ["### Summary", "", header + " | ECE |", "|---" * (len(CLASSES) + 4) + "|"]
    for name, scores in results.items():
        cells = ["{:.3f} / {:.3f} / {:.3f}".format(*scores.per_class(c)[:3]) for c in CLASSES]
        out.append(
            f"| {name} | {scores.accuracy:.3f} | {len(scores.answered)}/{len(scores.pairs)} | "
            + " | ".join(cells)
            + f" | {scores.ece:.3f} |"
        )
    return [*out, ""]


CLASSIFIERS: dict[str, tuple[Callable[[Trace], Verdict], str]] = {
    "Old rules": (
        old_rules,
        "The static rules alone, from the moving average of utilisation (what the agent ran "
        "before the window).",
    ),
    "Shape model alone": (
        shape_alone,
        "The time-shape model whenever the window has enough samples, whatever the static facts.",
    ),
    "Combined (what the agent runs)": (
        combined,
        "Strong static evidence stands; otherwise the time shape decides once the window has "
        "enough samples (`classify` with the window, as discovery calls it).",
    ),
}


def evaluate() -> str:
    traces = generate(TEST_COUNT, TEST_SEED)
    results = {
        name: Scores(tuple((t, classify(t)) for t in traces))
        for name, (classify, _) in CLASSIFIERS.items()
    }
    lines = _summary(results)
    for name, scores in results.items():
        lines += _section(name, CLASSIFIERS[name][1], scores)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--fit", action="store_true", help="fit the model and write it")
    parser.add_argument(
        "--left-to-shape",
        action="store_true",
        help="with --fit: fit only on the traces the strong static rules leave to the shape",
    )
    parser.add_argument("--out", type=Path, help="write the results here (markdown)")
    args = parser.parse_args()
    if args.fit:
        fit(left_to_shape=args.left_to_shape)
        return
    text = evaluate()
    if args.out is None:
        print(text)
        return
    template = args.out.read_text() if args.out.exists() else ""
    marker = "<!-- results -->"
    head = template.split(marker, 1)[0] if marker in template else template
    args.out.write_text(f"{head}{marker}\n\n{text}")


if __name__ == "__main__":
    main()
