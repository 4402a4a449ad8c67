"""Behaviour classification: the static rules against the time-shape model on held-out traces.

Traces come from ``bench/behaviour_traces.py``. ``--fit`` fits the model (multinomial
logistic regression, L2) on windows cut from a training set drawn with another seed and
writes ``src/backstop/agent/fingerprint/behaviour_model.py``. Without it, each held-out trace
is classified once at its end, as the discovery loop would after that many samples: the old
rules from the moving average of utilisation, the new classifier from the window as well.
Prints (or writes with ``--out``) accuracy, per-class precision and recall, the confusion
matrices and the calibration tables of both.

    .venv/bin/python bench/behaviour_eval.py --fit
    .venv/bin/python bench/behaviour_eval.py --out docs/behaviour.md
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections import Counter
from collections.abc import Callable, Sequence
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
    return behaviour.Evidence(
        listening=bool(t.ports),
        util=None,
        weights=t.has_weights,
        serving_framework=t.framework in behaviour.SERVING_FRAMEWORKS,
        ml_library=t.framework in behaviour.ML_LIBRARIES,
    )


def old_rules(t: Trace) -> Verdict:
    ema: float | None = None
    for s in t.samples:
        ema = (
            s.util_pct if ema is None else UTIL_SMOOTHING * s.util_pct + (1 - UTIL_SMOOTHING) * ema
        )
    return behaviour.classify(t.ports, ema, t.has_weights, t.framework)


def new_classifier(t: Trace) -> Verdict:
    window = BehaviourWindow()
    ema: float | None = None
    for s in t.samples:
        window.push(s.util_pct)
        ema = (
            s.util_pct if ema is None else UTIL_SMOOTHING * s.util_pct + (1 - UTIL_SMOOTHING) * ema
        )
    return behaviour.classify(t.ports, ema, t.has_weights, t.framework, window)


def _temperature(w: np.ndarray) -> float:
    """The temperature that minimises log loss on a calibration set, at each trace's end."""
    rows, labels = [], []
    for t in generate(CALIBRATION_COUNT, CALIBRATION_SEED):
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


def fit() -> None:
    rows, labels = [], []
    for t in generate(TRAIN_COUNT, TRAIN_SEED):
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
    w /= _temperature(w)
    body = "".join(
        "    (\n" + "".join(f"        {v:.4f},\n" for v in row) + "    ),\n" for row in w
    )
    MODEL_PATH.write_text(
        f'"""Coefficients of the behaviour model; written by ``bench/behaviour_eval.py --fit``.\n\n'
        f"Fitted on {TRAIN_COUNT} synthetic traces (seed {TRAIN_SEED}), {len(x)} windows.\n"
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


def _report(name: str, traces: Sequence[Trace], verdicts: Sequence[Verdict]) -> list[str]:
    n = len(traces)
    right = sum(v[0] is t.truth for t, v in zip(traces, verdicts, strict=True))
    answered = [
        (t, v) for t, v in zip(traces, verdicts, strict=True) if v[0] is not Behaviour.UNKNOWN
    ]
    right_answered = sum(v[0] is t.truth for t, v in answered)
    share = right_answered / max(1, len(answered))
    out = [
        f"### {name}",
        "",
        f"Accuracy {right / n:.3f} ({right}/{n}; unknown counts as wrong); "
        f"answered {len(answered)}/{n}, of which right {share:.3f}.",
        "",
        "| class | precision | recall | F1 | traces |",
        "|---|---|---|---|---|",
    ]
    for c in CLASSES:
        said = [t for t, v in zip(traces, verdicts, strict=True) if v[0] is c]
        truly = [v for t, v in zip(traces, verdicts, strict=True) if t.truth is c]
        tp = sum(t.truth is c for t in said)
        precision = tp / len(said) if said else 0.0
        recall = tp / len(truly)
        f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
        out.append(f"| {c} | {precision:.3f} | {recall:.3f} | {f1:.3f} | {len(truly)} |")
    out += ["", "Confusion (rows: truth, columns: answer):", ""]
    out += ["| truth \\ answer | " + " | ".join(str(p) for p in PREDICTED) + " |"]
    out += ["|---" * (len(PREDICTED) + 1) + "|"]
    for c in CLASSES:
        counts = Counter(v[0] for t, v in zip(traces, verdicts, strict=True) if t.truth is c)
        out.append(f"| {c} | " + " | ".join(str(counts[p]) for p in PREDICTED) + " |")
    out += ["", "Recall per trace kind:", ""]
    out += ["| kind | right | traces |", "|---|---|---|"]
    for kind in KINDS:
        of_kind = [(t, v) for t, v in zip(traces, verdicts, strict=True) if t.kind == kind]
        ok = sum(v[0] is t.truth for t, v in of_kind)
        out.append(f"| {kind} | {ok / max(1, len(of_kind)):.3f} | {len(of_kind)} |")
    out += ["", "Calibration (answered traces; confidence bin vs observed accuracy):", ""]
    out += ["| confidence | answers | mean confidence | accuracy |", "|---|---|---|---|"]
    gap = 0.0
    for lo, hi in itertools.pairwise(BINS):
        in_bin = [(t, v) for t, v in answered if lo <= v[1] < hi]
        if not in_bin:
            continue
        mean = sum(v[1] for _, v in in_bin) / len(in_bin)
        acc = sum(v[0] is t.truth for t, v in in_bin) / len(in_bin)
        gap += abs(acc - mean) * len(in_bin) / max(1, len(answered))
        out.append(f"| [{lo:.1f}, {min(hi, 1.0):.1f}) | {len(in_bin)} | {mean:.3f} | {acc:.3f} |")
    out += ["", f"Expected calibration error (answered traces): {gap:.3f}."]
    return [*out, ""]


def evaluate() -> str:
    traces = generate(TEST_COUNT, TEST_SEED)
    classifiers: dict[str, Callable[[Trace], Verdict]] = {
        "Old rules (static facts, moving average)": old_rules,
        "New classifier (time shape and static facts)": new_classifier,
    }
    lines: list[str] = []
    for name, classify in classifiers.items():
        lines += _report(name, traces, [classify(t) for t in traces])
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--fit", action="store_true", help="fit the model and write it")
    parser.add_argument("--out", type=Path, help="write the results here (markdown)")
    args = parser.parse_args()
    if args.fit:
        fit()
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
