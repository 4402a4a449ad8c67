"""Serving telemetry on the wire: unset stays unset, and bad numbers are refused."""

from __future__ import annotations

import pytest

from backstop.api.v1 import types_pb2
from backstop.core.errors import InvalidInput
from backstop.core.serving import ServingStats
from backstop.wire.serving_convert import serving_from_pb, serving_to_pb


def test_round_trip_keeps_unreported_quantities_unset() -> None:
    stats = ServingStats(
        "triton", 8002, "resnet", inferences_per_s=12.5, requests_waiting=0.0, sampled_at_s=9.0
    )
    msg = serving_to_pb(stats)
    assert not msg.HasField("generated_tokens_per_s")
    assert msg.HasField("requests_waiting")  # zero is a reading, not a gap
    back = serving_from_pb(types_pb2.ServingStats.FromString(msg.SerializeToString()))
    assert back == stats


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf")])
def test_negative_or_not_finite_rates_are_refused(value: float) -> None:
    with pytest.raises(InvalidInput, match="generated_tokens_per_s"):
        serving_from_pb(types_pb2.ServingStats(server="vllm", generated_tokens_per_s=value))


def test_an_overlong_model_name_is_refused() -> None:
    with pytest.raises(InvalidInput, match="served model name"):
        serving_from_pb(types_pb2.ServingStats(server="vllm", model_name="m" * 513))
