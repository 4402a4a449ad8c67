"""End to end: a real controller, two real agents, real model servers, the real CLI."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from backstop.simgpu import FakeNvml, default_gpus
from tests.e2e.conftest import Nodes, start_model_in_cgroup
from tests.support.cluster import LocalCluster, proc_state, tree, wait_for

pytestmark = pytest.mark.e2e

GPU0, GPU1 = (g.uuid for g in default_gpus(2))


def frozen(cgroup: Path) -> bool:
    return "frozen 1" in (cgroup / "cgroup.events").read_text()


def test_nodes_and_workloads_are_reported(nodes: Nodes) -> None:
    listed = {n["node_id"]: n for n in nodes.cluster.json("nodes")}
    assert set(listed) == {"node-a", "node-b"}
    assert all(n["connected"] for n in listed.values())
    assert [g["uuid"] for g in listed["node-a"]["gpus"]] == [GPU0, GPU1]
    assert "cgroup.freeze" in listed["node-a"]["capabilities"]
    workloads = nodes.cluster.workloads_by_pid()
    a = workloads[nodes.a.pid]
    assert a["node_id"] == "node-a"
    assert a["fingerprint"]["behaviour"] == "serving"
    assert a["fingerprint"]["weights"][0]["format"] == "safetensors"
    assert [g["gpu_uuid"] for g in a["fingerprint"]["gpus"]] == [GPU0]
    assert workloads[nodes.b2.pid]["node_id"] == "node-b"
    # the same weights on both nodes: one model hash
    assert a["fingerprint"]["model_hash"] == workloads[nodes.b1.pid]["fingerprint"]["model_hash"]
    table = nodes.cluster.cli("workloads")
    assert table.code == 0
    assert "WORKLOAD" in table.out
    assert "serving" in table.out


def test_pause_and_resume_across_two_agents(nodes: Nodes) -> None:
    started = time.monotonic()
    paused = nodes.cluster.cli("pause", "--all", "--reason", "e2e", "--yes", "--wait", "-o", "json")
    wall_s = time.monotonic() - started
    assert paused.code == 0, paused.err + paused.out
    correction = paused.json()
    assert correction["state"] == "completed"
    targets = {t["node_id"]: t for t in correction["targets"]}
    assert {n: t["state"] for n, t in targets.items()} == {
        "node-a": "applied",
        "node-b": "applied",
    }
    ack_s = max(t["updated_at_s"] for t in targets.values()) - correction["spec"]["created_at_s"]
    print(
        f"\npause --all, two agents: last ack after {ack_s * 1000:.0f} ms, CLI wall {wall_s:.2f} s"
    )
    # node-a's workload has a cgroup of its own: frozen
    assert frozen(nodes.a_cgroup)
    assert "cgroup.freeze" in targets["node-a"]["outcomes"][0]["detail"]
    # node-b's share a cgroup: every process of both trees stopped
    for server in (nodes.b1, nodes.b2):
        assert {proc_state(p) for p in tree(server.pid)} == {"T"}
    assert nodes.a.ask(timeout_s=1.0) is None
    assert nodes.b1.ask(timeout_s=1.0) is None

    resumed = nodes.cluster.cli("resume", correction["spec"]["correction_id"], "--wait")
    assert resumed.code == 0, resumed.err + resumed.out
    assert not frozen(nodes.a_cgroup)
    for server in (nodes.a, nodes.b1, nodes.b2):
        assert "T" not in {proc_state(p) for p in tree(server.pid)}
        assert server.ask() is not None
    status = nodes.cluster.json("status", correction["spec"]["correction_id"])
    assert status["state"] == "reverted"


def test_throttle_caps_gpu_power_and_resume_restores_it(nodes: Nodes) -> None:
    result = nodes.cluster.cli(
        "throttle", "--node", "node-a", "--power-fraction", "0.5", "--reason", "e2e", "--wait"
    )
    assert result.code == 0, result.err + result.out
    assert nodes.gpu_a.power_limit(GPU0) == 350_000
    assert GPU1 not in nodes.gpu_a.power_limits()  # not used by the workload: untouched
    assert nodes.gpu_b.power_limits() == {}  # another node: untouched
    cid = result.out.split()[0]
    resumed = nodes.cluster.cli("resume", cid, "--wait")
    assert resumed.code == 0, resumed.err + resumed.out
    assert nodes.gpu_a.power_limit(GPU0) == 700_000


def test_terminate_one_node_then_shutdown_all(nodes: Nodes) -> None:
    b_trees = tree(nodes.b1.pid) + tree(nodes.b2.pid)
    result = nodes.cluster.cli(
        "terminate", "--node", "node-b", "--grace", "1", "--reason", "e2e", "--yes", "--wait"
    )
    assert result.code == 0, result.err + result.out
    assert nodes.b1.proc.wait(5) is not None
    assert nodes.b2.proc.wait(5) is not None
    assert all(proc_state(p) in ("", "Z") for p in b_trees)
    assert nodes.a.ask() is not None  # node-a untouched

    shutdown = nodes.cluster.cli(
        "shutdown", "--all", "--grace", "1", "--reason", "e2e", "--yes", "--wait", "-o", "json"
    )
    assert shutdown.code == 0, shutdown.err + shutdown.out
    states = {t["node_id"]: t["state"] for t in shutdown.json()["targets"]}
    assert states == {"node-a": "applied", "node-b": "applied"}
    assert nodes.a.proc.wait(5) is not None


def test_severe_action_without_yes_and_no_tty_is_refused(nodes: Nodes) -> None:
    result = nodes.cluster.cli("terminate", "--all", "--reason", "e2e")
    assert result.code == 2
    assert "needs --yes" in result.err
    assert nodes.cluster.json("corrections") == []


def test_bad_input_is_refused_clearly(nodes: Nodes) -> None:
    cli = nodes.cluster.cli
    unknown = cli("pause", "--node", "ghost", "--reason", "x")
    assert (unknown.code, "unknown node(s): ghost" in unknown.err) == (4, True)
    selector = cli("pause", "--selector", "app", "--reason", "x")
    assert (selector.code, "malformed selector" in selector.err) == (2, True)
    missing = cli("status", "cor-does-not-exist")
    assert (missing.code, "no correction" in missing.err) == (4, True)
    flag = cli("pause", "--all", "--reason", "x", "--frobnicate")
    assert flag.code == 2
    assert "unrecognized arguments" in flag.err
    no_reason = cli("pause", "--all")
    assert no_reason.code == 2
    assert "--reason" in no_reason.err
    fraction = cli("throttle", "--all", "--power-fraction", "2", "--reason", "x")
    assert (fraction.code, "power fraction" in fraction.err) == (2, True)
    assert nodes.cluster.json("corrections") == []


def test_controller_down_is_a_clear_error(tmp_path: Path) -> None:
    local = LocalCluster(tmp_path)
    local.address = "127.0.0.1:9"  # discard port: nothing listens
    result = local.cli("nodes")
    assert result.code == 3
    assert "cannot reach the controller" in result.err
    remote = local.cli("--controller", "10.0.0.1:7443", "nodes")
    assert remote.code == 2
    assert "plaintext is allowed only on loopback" in remote.err


def test_controller_restart_mid_stream_loses_nothing(nodes: Nodes) -> None:
    cluster = nodes.cluster
    before = cluster.cli("pause", "--node", "node-b", "--reason", "before restart", "--wait")
    assert before.code == 0, before.err
    address = cluster.address
    cluster.kill_controller()
    cluster.start_controller(address)
    assert cluster.address == address

    def reconnected() -> bool:
        return all(n["connected"] for n in cluster.json("nodes"))

    wait_for(reconnected, 20, "agents to reconnect")
    assert [c["spec"]["reason"] for c in cluster.json("corrections")] == ["before restart"]
    assert {w["root_pid"] for w in cluster.json("workloads")} >= {nodes.a.pid, nodes.b1.pid}
    resumed = cluster.cli("resume", before.out.split()[0], "--wait")
    assert resumed.code == 0, resumed.err + resumed.out
    assert nodes.b1.ask() is not None


def test_metrics_and_health_endpoints(tmp_path: Path) -> None:
    local = LocalCluster(tmp_path)
    try:
        # Port 0 and the bound port from the log: a port picked free here may be taken by the
        # time the daemon binds it (the controller's own gRPC port 0 can land on it).
        local.start_controller("127.0.0.1:0", "--metrics-listen", "127.0.0.1:0")
        controller_metrics = local.logged("controller", "metrics listening")["address"]
        gpu = FakeNvml(tmp_path / "gpu-m")
        gpu.write(default_gpus(2))
        local.start_agent("node-m", gpu.env(), "--metrics-listen", "127.0.0.1:0")
        agent_metrics = local.logged("agent-node-m", "metrics listening")["address"]
        wait_for(lambda: local.json("nodes") or None, 20, "the agent")

        def agent_healthy() -> bool:
            return _get(f"http://{agent_metrics}/healthz")[0] == 200

        wait_for(agent_healthy, 20, "agent health")
        status, text = _get(f"http://{controller_metrics}/metrics")
        assert status == 200
        assert "backstop_controller_agents_connected 1.0" in text
        assert _get(f"http://{controller_metrics}/healthz") == (200, "ok\n")
        status, text = _get(f"http://{agent_metrics}/metrics")
        families = {f.name: f.samples for f in text_string_to_metric_families(text)}
        success = {s.labels["collector"]: s for s in families["backstop_agent_collector_success"]}
        assert success["processes"].value == 1.0
        assert success["processes"].labels["node"] == "node-m"  # set by the agent itself
        assert [(s.labels, s.value) for s in families["backstop_agent_connected"]] == [
            ({"node": "node-m"}, 1.0)
        ]
        # dcgm-exporter's series, from the GPUs the NVML library was told about
        utilization = {s.labels["UUID"]: s.value for s in families["DCGM_FI_DEV_GPU_UTIL"]}
        assert utilization == {g.uuid: g.utilization_pct for g in default_gpus(2)}
        assert "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{" in text
        local.kill_controller()

        def agent_unhealthy() -> bool:
            try:
                _get(f"http://{agent_metrics}/healthz")
            except urllib.error.HTTPError as exc:
                return exc.code == 503
            return False

        wait_for(agent_unhealthy, 20, "agent to report the controller lost")
    finally:
        local.stop()


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback
        return resp.status, resp.read().decode()


def test_pause_in_force_catches_a_workload_that_starts_later(nodes: Nodes) -> None:
    cluster = nodes.cluster
    paused = cluster.cli("pause", "--node", "node-a", "--reason", "hold node-a", "--wait")
    assert paused.code == 0, paused.err
    late_cgroup = nodes.cgroups.make("node-a/model-late")
    late = start_model_in_cgroup(cluster, "model-late", late_cgroup, warm_up=False)
    wait_for(lambda: frozen(late_cgroup), 15, "the late workload to be frozen")
    assert late.ask(timeout_s=1.0) is None
    assert nodes.b1.ask() is not None  # other node untouched
    resumed = cluster.cli("resume", paused.out.split()[0], "--wait")
    assert resumed.code == 0, resumed.err
    assert not frozen(late_cgroup)
    assert late.ask() is not None


def test_agent_without_nvml_reports_without_gpus(tmp_path: Path) -> None:
    local = LocalCluster(tmp_path)
    try:
        local.start_controller()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BACKSTOP_FAKE_NVML")}
        env["LD_LIBRARY_PATH"] = ""
        local.start_agent("no-gpu", env)
        node = wait_for(lambda: (local.json("nodes") or [None])[0], 20, "the agent")
        assert node["nvml_available"] is False
        assert node["gpus"] == []
        assert node["connected"] is True
        log = (tmp_path / "agent-no-gpu.log").read_text()
        assert "NVML is not available" in log
        assert "Traceback" not in log
        assert "no NVML" in local.cli("nodes").out
    finally:
        local.stop()
