"""Serving telemetry end to end: a real model server (vLLM's metric names on its own port) is
found by a real agent, and ``backstop workloads -o json`` reports what it serves and how fast."""

from __future__ import annotations

import pytest

from tests.support.cluster import LocalCluster, wait_for

pytestmark = pytest.mark.e2e


def test_workloads_report_the_served_model_and_its_tokens_per_second(
    cluster: LocalCluster,
) -> None:
    cluster.start_controller()
    model = cluster.start_model_server("model-s")
    cluster.start_agent("node-s")
    wait_for(lambda: model.pid in cluster.workloads_by_pid(), 20, "the model server")

    def serving_with_rate() -> dict | None:
        for _ in range(20):  # six completion tokens a request
            assert model.ask() is not None
        serving = cluster.workloads_by_pid()[model.pid].get("serving")
        if serving and serving.get("generated_tokens_per_s", 0) > 0:
            return dict(serving)
        return None

    serving = wait_for(serving_with_rate, 45, "a tokens/s reading")
    assert serving["server"] == "vllm"
    assert serving["model_name"] == "backstop-demo-tiny"
    assert serving["port"] == model.port
    assert serving["prompt_tokens_per_s"] > 0
    assert serving["requests_waiting"] == 0
