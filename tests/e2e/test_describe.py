"""``backstop describe``: one node, workload, correction or model, everything known about it,
through the real CLI against real agents."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Nodes
from tests.support.cluster import wait_for

pytestmark = pytest.mark.e2e


def test_describe_each_kind(nodes: Nodes) -> None:
    cluster = nodes.cluster
    paused = cluster.cli("pause", "--node", "node-a", "--reason", "look closer", "--wait")
    assert paused.code == 0, paused.err + paused.out
    cid = paused.out.split()[0]
    workload = cluster.wait_for_workload(nodes.a.pid)

    node = cluster.cli("describe", "node", "node-a")
    assert node.code == 0, node.err
    assert "status:" in node.out
    assert "connected" in node.out
    assert workload["workload_id"] in node.out
    assert cid in node.out  # a recent correction that reached it
    as_data = cluster.json("describe", "node", "node-a")
    assert as_data["node"]["node_id"] == "node-a"
    assert [w["workload_id"] for w in as_data["workloads"]] == [workload["workload_id"]]

    held = wait_for(
        lambda: (
            cluster.json("describe", "workload", workload["workload_id"])
            if cluster.json("describe", "workload", workload["workload_id"])["workload"]["holds"]
            else None
        ),
        20,
        "the hold to be reported",
    )
    assert [c["spec"]["correction_id"] for c in held["corrections"]] == [cid]
    text = cluster.cli("describe", "workload", workload["workload_id"]).out
    assert "corrections holding it:" in text
    assert "look closer" in text
    assert "architecture:" in text
    assert "BackstopDemoForCausalLM" in text

    correction = cluster.cli("describe", "correction", cid)
    assert correction.code == 0, correction.err
    assert "look closer" in correction.out

    model_id = workload["fingerprint"]["model_id"]
    model = cluster.json("describe", "model", model_id[:12])
    assert model["model"]["model_id"] == model_id

    unknown = cluster.cli("describe", "node", "node-z")
    assert unknown.code == 4, unknown.err  # unknown id
    assert "unknown node" in unknown.err
    assert cluster.cli("resume", cid, "--wait").code == 0
