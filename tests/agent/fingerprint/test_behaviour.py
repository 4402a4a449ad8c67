"""Behaviour classification: the static rules, and their combination with the time shape."""

from __future__ import annotations

import random

import pytest

from backstop.agent.fingerprint.behaviour import (
    RULES,
    STRONG_RULES,
    UNKNOWN_BELOW,
    Evidence,
    by_shape,
    classify,
)
from backstop.agent.fingerprint.behaviour_window import MIN_SAMPLES, WINDOW_SAMPLES, BehaviourWindow
from backstop.core.models import Behaviour


@pytest.mark.parametrize(
    ("ports", "util", "weights", "framework", "behaviour", "confidence"),
    [
        ((8000,), 40.0, True, "vllm", Behaviour.SERVING, 0.95),
        ((8000,), None, False, "tgi", Behaviour.SERVING, 0.90),
        ((8080,), None, True, "", Behaviour.SERVING, 0.80),
        ((), 10.0, True, "vllm", Behaviour.SERVING, 0.60),
        ((), 97.0, False, "torch", Behaviour.TRAINING, 0.70),
        ((), 97.0, True, "", Behaviour.TRAINING, 0.70),
        ((), 90.0, False, "", Behaviour.TRAINING, 0.60),
        ((9000,), 50.0, False, "", Behaviour.SERVING, 0.50),
        ((), 45.0, False, "torch", Behaviour.OTHER, 0.40),
        ((), 0.0, False, "", Behaviour.OTHER, 0.50),
        ((22,), None, False, "", Behaviour.OTHER, 0.30),
        ((22,), 0.0, False, "", Behaviour.OTHER, 0.30),
        ((), None, False, "", Behaviour.UNKNOWN, 0.0),
        ((), None, True, "torch", Behaviour.UNKNOWN, 0.0),
    ],
)
def test_heuristics(
    ports: tuple[int, ...],
    util: float | None,
    weights: bool,
    framework: str,
    behaviour: Behaviour,
    confidence: float,
) -> None:
    assert classify(ports, util, weights, framework) == (behaviour, confidence)


def test_a_busy_server_stays_a_server() -> None:
    behaviour, _ = classify((8000,), 100.0, True, "")

    assert behaviour is Behaviour.SERVING


@pytest.mark.parametrize("util", [None, 0.0, 50.0, 100.0])
@pytest.mark.parametrize("listening", [(), (80,)])
@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("framework", ["", "vllm", "torch"])
def test_confidence_is_a_probability(
    util: float | None, listening: tuple[int, ...], weights: bool, framework: str
) -> None:
    _, confidence = classify(listening, util, weights, framework)

    assert 0.0 <= confidence <= 1.0


# -- the combined decision: strong static evidence, else the time shape ---------------------


def window_of(samples: list[float]) -> BehaviourWindow:
    window = BehaviourWindow()
    for s in samples:
        window.push(s)
    return window


def quiet_server(n: int = WINDOW_SAMPLES) -> list[float]:
    """One request in the window, a few seconds of work; idle otherwise."""
    return [60.0 if t % 1000 < 3 else 0.0 for t in range(n)]


def miner(rng: random.Random, n: int = WINDOW_SAMPLES) -> list[float]:
    return [min(100.0, rng.uniform(99.0, 101.0)) for _ in range(n)]


def training(rng: random.Random, n: int = WINDOW_SAMPLES) -> list[float]:
    """Steady and high, with a checkpoint dip every 40 samples."""
    return [rng.uniform(0, 10) if t % 40 < 4 else rng.uniform(90, 99) for t in range(n)]


@pytest.mark.parametrize(
    ("framework", "weights", "confidence"),
    [("vllm", True, 0.95), ("vllm", False, 0.90)],
)
def test_a_quiet_listening_server_stays_serving_with_a_full_window(
    framework: str, weights: bool, confidence: float
) -> None:
    window = window_of(quiet_server())

    verdict = classify((8000,), 8.0, weights, framework, window)

    assert verdict == (Behaviour.SERVING, confidence)


def test_a_listener_with_weights_is_serving_by_the_rules_and_left_to_the_shape_after() -> None:
    # measured: a listener with weights but no serving framework is a server less than half
    # of the time once the shape is known (docs/behaviour.md), so it does not override it
    window = window_of(quiet_server())
    few = window_of(quiet_server()[: MIN_SAMPLES - 1])

    assert classify((8000,), 8.0, True, "", few) == (Behaviour.SERVING, 0.80)
    assert classify((8000,), 8.0, True, "", window) == by_shape(
        window, Evidence.of((8000,), 8.0, True, "")
    )


def test_a_miner_like_constant_load_without_a_listener_is_other_once_the_window_is_full() -> None:
    window = window_of(miner(random.Random(7)))
    assert classify((), 100.0, False, "") == (Behaviour.TRAINING, 0.60)  # the rules alone

    behaviour, confidence = classify((), 100.0, False, "", window)

    assert behaviour is Behaviour.OTHER
    assert confidence >= UNKNOWN_BELOW


@pytest.mark.parametrize(
    ("ports", "weights", "framework"),
    [((), False, "torch"), ((29500,), False, "torch"), ((), False, "")],
)
def test_a_training_shape_without_strong_static_evidence_is_training(
    ports: tuple[int, ...], weights: bool, framework: str
) -> None:
    window = window_of(training(random.Random(8)))

    behaviour, confidence = classify(ports, 85.0, weights, framework, window)

    assert behaviour is Behaviour.TRAINING
    assert confidence >= UNKNOWN_BELOW


def test_a_rendezvous_port_makes_the_rules_say_serving_but_the_shape_says_training() -> None:
    window = window_of(training(random.Random(9)))

    assert classify((29500,), 85.0, False, "torch")[0] is Behaviour.SERVING
    assert classify((29500,), 85.0, False, "torch", window)[0] is Behaviour.TRAINING


def test_with_fewer_than_min_samples_the_rules_decide() -> None:
    samples = miner(random.Random(10))
    short = window_of(samples[: MIN_SAMPLES - 1])
    enough = window_of(samples[:MIN_SAMPLES])

    assert classify((), 100.0, False, "", short) == (Behaviour.TRAINING, 0.60)
    assert classify((), 100.0, False, "", None) == (Behaviour.TRAINING, 0.60)
    assert classify((), 100.0, False, "", enough)[0] is Behaviour.OTHER


def test_the_strong_rules_are_the_first_static_rules() -> None:
    assert RULES[: len(STRONG_RULES)] == STRONG_RULES
    assert {behaviour for _, behaviour, _ in STRONG_RULES} == {Behaviour.SERVING}
