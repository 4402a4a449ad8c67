"""``backstop describe``: one node, workload, correction or model, everything known about it,
through the real CLI against real agents."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

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
    assert (as_data["apiVersion"], as_data["kind"]) == ("backstop.io/v1", "NodeDescription")
    assert as_data["node"]["kind"] == "Node"  # each record as the listings print it
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
    assert held["kind"] == "WorkloadDescription"
    assert held["workload"]["holds"] == [{"correction_id": cid, "action": "pause"}]
    assert held["corrections"][0]["spec"]["action"] == "pause"  # the enum's word
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
    assert model["kind"] == "ModelHistory"

    unknown = cluster.cli("describe", "node", "node-z")
    assert unknown.code == 4, unknown.err  # unknown id
    assert "unknown node" in unknown.err
    assert cluster.cli("resume", cid, "--wait").code == 0


def test_watch_prints_the_listing_again_when_it_changes(nodes: Nodes) -> None:
    cluster = nodes.cluster
    env = {**os.environ, "BACKSTOP_CONTROLLER": cluster.address, "BACKSTOP_INSECURE": "1"}
    watcher = subprocess.Popen(
        [sys.executable, "-m", "backstop", "workloads", "--node", "node-a", "-o", "json",
         "--watch", "--interval", "0.3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    assert watcher.stdout is not None
    os.set_blocking(watcher.stdout.fileno(), False)
    received = ""
    docs: list[Any] = []

    def documents(count: int) -> list[Any] | None:
        nonlocal received
        received += (watcher.stdout.read() or b"").decode()  # type: ignore[union-attr]
        decoder, at, found = json.JSONDecoder(), 0, []
        while at < len(received.rstrip()):
            try:
                doc, at = decoder.raw_decode(received, at)
            except json.JSONDecodeError:
                break
            found.append(doc)
            while at < len(received) and received[at].isspace():
                at += 1
        return found if len(found) >= count else None

    try:
        docs = wait_for(lambda: documents(1), 20, "the first listing")
        assert [w["holds"] for w in docs[0]] == [[]]
        paused = cluster.cli("pause", "--node", "node-a", "--reason", "watched", "--wait")
        assert paused.code == 0, paused.err
        docs = wait_for(lambda: documents(2), 20, "the listing after the pause")
        assert docs[-1][0]["holds"][0]["correction_id"] == paused.out.split()[0]
        time.sleep(1.0)  # unchanged listings are not printed again
        assert len(documents(1) or []) == len(docs)
    finally:
        watcher.send_signal(signal.SIGINT)
        os.set_blocking(watcher.stdout.fileno(), True)
        _, err = watcher.communicate(timeout=20)  # drains the pipe: a blocked writer can end
    assert watcher.returncode == 0, err
    assert cluster.cli("resume", paused.out.split()[0], "--wait").code == 0
