"""From detection to correction, end to end with real processes: a policy watches a model by
its identity; a server holding the same tensors re-sharded is paused by the policy, the alert
is listed, signed to a webhook receiver and held by a real Alertmanager; a near miss (one
tensor changed) is left alone; the blast-radius limit holds the correction past it."""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from backstop.agent.weights.identify import identify
from backstop.simgpu import FakeNvml, default_gpus
from tests.support.alert_receivers import Alertmanager, Receiver
from tests.support.cluster import LocalCluster, proc_state, wait_for

pytestmark = pytest.mark.e2e

SECRET = b"a webhook secret"
CONFIG = {"architectures": ["WatchedForCausalLM"], "model_type": "watched", "hidden_size": 64}


def _tensors(seed: int, changed: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    embed = rng.standard_normal((256, 64), dtype=np.float32)
    head = rng.standard_normal((256, 64), dtype=np.float32)
    if changed:
        head[17, 5] += 1.0  # one value of one tensor: another model
    return {"model.embed_tokens.weight": embed, "lm_head.weight": head}


def _seed(directory: Path) -> int:
    """Weights of this test's own: processes of other tests on this host never match."""
    return int(hashlib.sha256(str(directory.parent).encode()).hexdigest()[:8], 16)


def _one_file(directory: Path, changed: bool = False) -> Path:
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps(CONFIG))
    save_file(_tensors(_seed(directory), changed), str(directory / "model.safetensors"))
    return directory / "model.safetensors"


def _sharded(directory: Path) -> None:
    """The same tensors in two shards, with the index Hugging Face writes."""
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps(CONFIG))
    weight_map = {}
    for number, (name, tensor) in enumerate(sorted(_tensors(_seed(directory)).items()), start=1):
        shard = f"model-0000{number}-of-00002.safetensors"
        save_file({name: tensor}, str(directory / shard))
        weight_map[name] = shard
    index = {"metadata": {"total_size": 2 * 256 * 64 * 4}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))


@dataclass
class Served:
    pid: int
    started_s: float


def _serve(cluster: LocalCluster, name: str, directory: Path) -> Served:
    port_file = cluster.workdir / f"{name}.port"
    started = time.monotonic()
    argv = [sys.executable, "-m", "tests.support.shard_server", str(directory), str(port_file)]
    proc = cluster.spawn(name, argv)
    wait_for(port_file.exists, 20, f"{name} to listen")
    return Served(proc.pid, started)


def _policy(cluster: LocalCluster, name: str, model_id: str, limit: int = 10) -> str:
    path = cluster.workdir / f"{name}.yaml"
    path.write_text(
        f"name: {name}\n"
        "description: weights reported in incident 4411\n"
        "match:\n"
        f'  model_id: "{model_id[:16]}"\n'
        "action: pause\n"
        "severity: critical\n"
        f"max_targets_per_hour: {limit}\n"
    )
    return str(path)


def _start(cluster: LocalCluster, *controller_flags: str) -> None:
    cluster.start_controller("127.0.0.1:0", *controller_flags)
    gpu = FakeNvml(cluster.workdir / "gpu")
    gpu.write(default_gpus(1))
    cluster.start_agent("node-p", gpu.env())
    wait_for(lambda: cluster.json("nodes") or None, 20, "the agent")


def test_a_watched_model_is_paused_alerted_and_delivered(
    cluster: LocalCluster, tmp_path: Path, receiver: Receiver, alertmanager: Alertmanager
) -> None:
    watched = identify([_one_file(tmp_path / "original")]).model_id
    _sharded(tmp_path / "resharded")
    _one_file(tmp_path / "near-miss", changed=True)
    receiver.listen()
    secret = tmp_path / "hook.secret"
    secret.write_bytes(SECRET + b"\n")
    _start(
        cluster,
        "--alert-webhook-url", receiver.url,
        "--alert-webhook-secret-file", str(secret),
        "--alertmanager-url", alertmanager.url,
    )  # fmt: skip
    policy = _policy(cluster, "block-known-model", watched)
    tested = cluster.json("policy", "test", policy)
    assert (tested["kind"], tested["matches"]) == ("PolicyTest", [])
    applied = cluster.json("policy", "apply", policy)
    assert applied["state"] == "active"

    near = _serve(cluster, "near-miss", tmp_path / "near-miss")
    copy = _serve(cluster, "resharded", tmp_path / "resharded")
    wait_for(lambda: proc_state(copy.pid) == "T", 20, "the re-sharded copy to be paused")
    took = time.monotonic() - copy.started_s
    near_workload = cluster.wait_for_workload(near.pid)
    assert near_workload["fingerprint"]["model_id"] not in ("", watched)
    time.sleep(2)  # two more reports of the near miss
    assert proc_state(near.pid) in ("S", "R")

    paused = cluster.wait_for_workload(copy.pid)
    assert paused["fingerprint"]["model_id"] == watched  # by identity, not by file
    (correction,) = cluster.json("corrections")
    assert correction["spec"]["issuer"] == "policy:block-known-model"
    assert correction["spec"]["scope"]["workload_ids"] == [paused["workload_id"]]
    assert correction["state"] == "completed"
    assert took < 15, f"paused {took:.1f} s after it started"

    (alert,) = cluster.json("alerts")
    assert (alert["policy"], alert["workload_id"], alert["severity"]) == (
        "block-known-model",
        paused["workload_id"],
        "critical",
    )
    assert alert["details"]["model_id"] == watched

    def delivered() -> list[dict[str, object]]:
        return [json.loads(r.body) for r in receiver.received if b"block-known-model" in r.body]

    (posted,) = wait_for(lambda: delivered() or None, 20, "the webhook delivery")
    assert posted["alert_id"] == alert["alert_id"]
    request = next(r for r in receiver.received if b"block-known-model" in r.body)
    stamp = request.headers["X-Backstop-Timestamp"]
    mac = hmac.new(SECRET, stamp.encode() + b"." + request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Backstop-Signature"] == f"sha256={mac}"

    def held() -> list[dict[str, object]]:
        return [a for a in alertmanager.alerts() if a["labels"]["alertname"] == "block-known-model"]

    (in_alertmanager,) = wait_for(lambda: held() or None, 20, "Alertmanager to hold the alert")
    assert in_alertmanager["labels"]["severity"] == "critical"

    acked = cluster.json("alerts", "ack", alert["alert_id"])
    assert (acked["state"], acked["acked_by"]) == ("acknowledged", "e2e")


def test_past_its_limit_a_policy_waits_for_a_person(cluster: LocalCluster, tmp_path: Path) -> None:
    watched = identify([_one_file(tmp_path / "original")]).model_id
    _start(cluster)
    applied = cluster.json("policy", "apply", _policy(cluster, "one-an-hour", watched, limit=1))
    assert applied["state"] == "active"

    first = _serve(cluster, "first", tmp_path / "original")
    wait_for(lambda: proc_state(first.pid) == "T", 20, "the first copy to be paused")
    second = _serve(cluster, "second", tmp_path / "original")

    def held() -> dict[str, object] | None:
        return next((c for c in cluster.json("corrections") if c["state"] == "proposed"), None)

    waiting = wait_for(held, 20, "the second correction to be held")
    assert "max_targets_per_hour 1" in str(waiting["message"])
    time.sleep(1.5)
    assert proc_state(second.pid) in ("S", "R")  # held: not paused

    released = cluster.cli("approve", str(waiting["spec"]["correction_id"]), "--yes")
    assert released.code == 0, released.err
    wait_for(lambda: proc_state(second.pid) == "T", 20, "the released correction to pause it")


def test_an_enforce_node_policy_pauses_while_the_controller_is_down(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    watched = identify([_one_file(tmp_path / "original")]).model_id
    _start(cluster)
    path = Path(_policy(cluster, "on-the-node", watched))
    path.write_text(path.read_text() + "enforce: node\n")
    assert cluster.json("policy", "apply", str(path))["state"] == "active"
    stored = tmp_path / "state-node-p" / "node-policies.json"
    wait_for(
        lambda: stored.exists() and bool(json.loads(stored.read_text())["policies"]),
        20,
        "the agent to keep the node policy",
    )

    address = cluster.address
    cluster.kill_controller()
    copy = _serve(cluster, "copy", tmp_path / "original")
    wait_for(lambda: proc_state(copy.pid) == "T", 20, "the agent to pause it on its own")
    journal = (tmp_path / "state-node-p" / "audit.jsonl").read_text()
    assert '"policy.node_enforce"' in journal

    cluster.start_controller(address)  # the same store: the policy is still in force
    corrections = wait_for(lambda: cluster.json("corrections") or None, 30, "its correction")
    assert corrections[0]["spec"]["issuer"] == "policy:on-the-node"
    wait_for(
        lambda: '"policy.node_handover"' in (tmp_path / "state-node-p" / "audit.jsonl").read_text(),
        30,
        "the agent to hand the workload over",
    )
    time.sleep(1)
    assert proc_state(copy.pid) == "T"  # held by the controller's correction throughout
    (workload,) = [w for w in cluster.json("workloads") if w["root_pid"] == copy.pid]
    assert [h["correction_id"] for h in workload["holds"]] == [
        corrections[0]["spec"]["correction_id"]
    ]
