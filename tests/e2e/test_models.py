"""The fleet view end to end: three copies of one model (the demo model server's weights, with
its config.json) on two agents, found by real agents, listed by the real CLI."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Nodes
from tests.support.cluster import wait_for

pytestmark = pytest.mark.e2e


def _with_rate(nodes: Nodes) -> list[dict[str, Any]] | None:
    for server in (nodes.a, nodes.b1, nodes.b2):
        for _ in range(10):
            server.ask("count my tokens")
    models = nodes.cluster.json("models")
    if models and models[0]["copies"] == 3 and models[0]["tokens_per_second"]:
        return list(models)
    return None


def test_three_copies_on_two_agents_are_one_model(nodes: Nodes) -> None:
    cluster = nodes.cluster
    (model,) = wait_for(lambda: _with_rate(nodes), 60, "three copies with a tokens/s reading")
    assert len(model["model_id"]) == 64
    assert model["architecture"] == "BackstopDemoForCausalLM"
    assert model["name"] == "backstop-demo-tiny"
    assert model["parameters"] == 256 * 64  # an integer, not a string
    assert model["formats"] == ["safetensors"]
    assert model["node_ids"] == ["node-a", "node-b"]
    assert model["gpu_memory_bytes"] == 12 * 2**30  # 8 GiB on node-a, 4 GiB on node-b
    assert model["tokens_per_second"] > 0
    assert model["served_names"] == ["backstop-demo-tiny"]
    assert (model["apiVersion"], model["kind"]) == ("backstop.io/v1", "Model")
    assert model["last_seen"].endswith("Z")  # the RFC 3339 twin of last_seen_s
    assert model["last_seen_s"] > 0

    prefix = model["model_id"][:12]
    one = cluster.json("models", prefix)
    assert one["model"]["model_id"] == model["model_id"]
    assert sorted(s["node_id"] for s in one["history"]) == ["node-a", "node-b", "node-b"]
    assert all(s["running"] for s in one["history"])
    assert one["kind"] == "ModelHistory"
    assert {s["kind"] for s in one["history"]} == {"ModelSighting"}

    held = cluster.json("workloads", "--model", prefix)
    assert {w["root_pid"] for w in held} == {nodes.a.pid, nodes.b1.pid, nodes.b2.pid}
    for w in held:  # the JSON contract: on the fingerprint, parameters as an integer
        assert w["fingerprint"]["model_id"] == model["model_id"]
        assert w["fingerprint"]["parameters"] == 256 * 64
        assert w["fingerprint"]["architecture"] == "BackstopDemoForCausalLM"
        assert w["serving"]["model_name"] == "backstop-demo-tiny"

    table = cluster.cli("models")
    assert table.code == 0, table.err
    assert prefix in table.out
    assert "BackstopDemoForCausalLM" in table.out

    unknown = cluster.cli("models", "0123456789ab")
    assert unknown.code != 0
    assert "no model" in unknown.err


def test_a_correction_by_model_id_reaches_every_copy(nodes: Nodes) -> None:
    cluster = nodes.cluster
    model = wait_for(
        lambda: next((m for m in cluster.json("models") if m["copies"] == 3), None), 40, "model"
    )
    paused = cluster.cli(
        "pause", "--model", model["model_id"][:16], "--reason", "hold every copy", "--wait"
    )
    assert paused.code == 0, paused.err + paused.out
    assert nodes.a.ask(timeout_s=1.0) is None
    assert nodes.b1.ask(timeout_s=1.0) is None
    resumed = cluster.cli("resume", paused.out.split()[0], "--wait")
    assert resumed.code == 0, resumed.err + resumed.out
    assert nodes.a.ask() is not None
