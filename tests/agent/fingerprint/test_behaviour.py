"""Behaviour classification heuristics."""

from __future__ import annotations

import pytest

from backstop.agent.fingerprint.behaviour import classify
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
