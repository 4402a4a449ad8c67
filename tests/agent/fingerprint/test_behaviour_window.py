"""The behaviour window and the time-shape classifier: contract on representative traces."""

from __future__ import annotations

import math
import random

import pytest

from backstop.agent.fingerprint.behaviour import UNKNOWN_BELOW, classify
from backstop.agent.fingerprint.behaviour_window import (
    FEATURE_NAMES,
    MIN_SAMPLES,
    WINDOW_SAMPLES,
    BehaviourWindow,
)
from backstop.agent.workload_record import UtilisationAverage
from backstop.core.models import Behaviour


def window_of(samples: list[float]) -> BehaviourWindow:
    window = BehaviourWindow()
    for s in samples:
        window.push(s)
    return window


def serving(rng: random.Random, n: int = 300) -> list[float]:
    """Requests now and then: short busy bursts, idle between."""
    out: list[float] = []
    while len(out) < n:
        out += [rng.uniform(50, 100) for _ in range(rng.randint(1, 4))]
        out += [0.0] * rng.randint(2, 15)
    return out[:n]


def training(rng: random.Random, n: int = 300) -> list[float]:
    """Steady and high, with a checkpoint dip every 40 samples."""
    return [rng.uniform(0, 10) if t % 40 < 4 else rng.uniform(90, 99) for t in range(n)]


def miner(rng: random.Random, n: int = 300) -> list[float]:
    return [min(100.0, rng.uniform(99, 101)) for _ in range(n)]


def paused(n: int = 300) -> list[float]:
    return [0.0] * n


def test_a_bursty_server_with_a_port_is_serving() -> None:
    window = window_of(serving(random.Random(1)))

    behaviour, confidence = classify((8000,), 30.0, True, "vllm", window)

    assert behaviour is Behaviour.SERVING
    assert confidence >= UNKNOWN_BELOW


def test_steady_work_with_periodic_dips_is_training() -> None:
    window = window_of(training(random.Random(2)))

    behaviour, _ = classify((), 90.0, False, "torch", window)

    assert behaviour is Behaviour.TRAINING


def test_constant_flat_out_without_network_or_weights_is_other() -> None:
    window = window_of(miner(random.Random(3)))

    behaviour, _ = classify((), 100.0, False, "", window)

    assert behaviour is Behaviour.OTHER


def test_a_paused_model_holding_memory_is_other() -> None:
    behaviour, _ = classify((), 0.0, True, "torch", window_of(paused()))

    assert behaviour is Behaviour.OTHER


def test_the_old_rules_decide_until_the_window_has_enough_samples() -> None:
    short = window_of(training(random.Random(4), MIN_SAMPLES - 1))

    assert classify((), 97.0, False, "torch", short) == classify((), 97.0, False, "torch")
    assert classify((22,), None, False, "", None) == (Behaviour.OTHER, 0.30)


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("listening", [(), (8888,)])
def test_confidence_is_a_probability_and_low_confidence_is_unknown(
    seed: int, listening: tuple[int, ...]
) -> None:
    rng = random.Random(seed)
    samples = [rng.choice([0.0, rng.uniform(0, 100)]) for _ in range(rng.randint(20, 400))]

    behaviour, confidence = classify(listening, 50.0, rng.random() < 0.5, "", window_of(samples))

    assert 0.0 <= confidence <= 1.0
    if behaviour is Behaviour.UNKNOWN:
        assert confidence == 0.0
    else:
        assert confidence >= UNKNOWN_BELOW


def test_the_window_is_bounded_and_its_running_sums_stay_exact() -> None:
    rng = random.Random(5)
    samples = [rng.choice([0.0, 100.0, rng.uniform(0, 100)]) for _ in range(10_000)]
    window = window_of(samples)
    fresh = window_of(samples[-WINDOW_SAMPLES:])

    assert len(window) == WINDOW_SAMPLES
    assert not hasattr(window, "__dict__")
    running = window.features()[:6]
    recomputed = fresh.features()[:6]
    for name, a, b in zip(FEATURE_NAMES, running, recomputed, strict=False):
        assert math.isclose(a, b, abs_tol=1e-6), name
    assert all(0.0 <= f <= 1.0 for f in window.features())


def test_an_empty_window_has_zero_features() -> None:
    assert BehaviourWindow().features() == (0.0,) * len(FEATURE_NAMES)


def test_windows_are_kept_per_live_workload_only() -> None:
    average = UtilisationAverage()
    for i in range(500):
        average.update("a", [i % 100])
        average.update("b", [50])

    window = average.window("a")
    assert window is not None
    assert len(window) == WINDOW_SAMPLES
    assert average.window("never") is None

    average.retain({"b"})

    assert average.window("a") is None
    assert average.window("b") is not None
