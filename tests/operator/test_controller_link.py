"""End to end with a real controller: the operator joins as the cluster's agent, reports the GPU
workloads, and ``backstop shutdown --all`` reaches them; ``backstop resume`` brings them back.

Processes: the controller (``backstop --insecure controller serve`` on loopback), the operator
(``backstop --insecure --controller ADDR operator run``), and the CLI, all as real processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.operator.rig import OperatorProcess, Rig
from tests.support.cluster import LocalCluster, wait_for
from tests.support.kube import ControlPlane
from tests.support.secure import SecureSetup, backstop

SESSION_NODES = ("gpu-node-0", "gpu-node-1")
TAINT = "backstop.io/shutdown"


@pytest.fixture
def linked(
    crd: ControlPlane, namespace: str, cluster: LocalCluster, tmp_path: Path
) -> Iterator[tuple[LocalCluster, OperatorProcess, Rig]]:
    cluster.start_controller("127.0.0.1:0", "--report-interval", "1", "--ack-timeout", "30")
    operator = OperatorProcess(
        crd,
        tmp_path,
        "--cluster-name",
        "e2e",
        "--resync",
        "1",
        global_args=("--insecure", "--controller", cluster.address),
    )
    operator.start()
    rig = Rig(crd, namespace)
    try:
        yield cluster, operator, rig
    finally:
        try:
            rig.cleanup()  # reverts whatever is left, while the operator still runs
        finally:
            code = operator.stop()
            print(operator.tail(30)[-8000:])
        assert code == 0


def ours(cluster: LocalCluster, namespace: str) -> dict[str, dict[str, Any]]:
    return {
        w["workload_id"]: w
        for w in cluster.json("workloads")
        if w["workload_id"].startswith(f"{namespace}/")
    }


def test_shutdown_all_through_the_controller_reaches_kubernetes_workloads(
    linked: tuple[LocalCluster, OperatorProcess, Rig],
) -> None:
    cluster, _, rig = linked
    ns = rig.namespace
    rig.deployment("llm", 2)
    rig.deployment("embed", 1, image="ghcr.io/huggingface/text-generation-inference:2.4")
    rig.wait_running("llm", 2)
    rig.wait_running("embed", 1)

    # The operator is the cluster's agent: one node, k8s-e2e, carrying the GPU workloads.
    node = wait_for(
        lambda: next(
            (n for n in cluster.json("nodes") if n["node_id"] == "k8s-e2e" and n["connected"]),
            None,
        ),
        30,
        "the operator to join the controller",
    )
    assert node["labels"]["backstop.io/kind"] == "kubernetes"
    assert node["labels"]["backstop.io/cluster"] == "e2e"
    assert "k8s.cordon" in node["capabilities"]
    workloads = wait_for(
        lambda: (found := ours(cluster, ns)) and len(found) == 2 and found,
        30,
        "the GPU workloads in a report",
    )
    llm = workloads[f"{ns}/Deployment/llm"]
    assert llm["node_id"] == "k8s-e2e"
    assert llm["state"] == "running"
    assert llm["fingerprint"]["framework"] == "vllm"
    assert len(llm["fingerprint"]["gpus"]) == 2  # 2 replicas x 1 GPU requested
    assert llm["labels"]["app"] == "llm"
    assert llm["labels"]["backstop.io/namespace"] == ns
    assert workloads[f"{ns}/Deployment/embed"]["fingerprint"]["framework"] == "tgi"

    done = cluster.cli(
        "shutdown", "--all", "--reason", "unsafe model", "--yes", "--wait", "-o", "json"
    )

    assert done.code == 0, done.err
    final = done.json()
    cid = final["spec"]["correction_id"]
    rig.applied.append(f"ctl-{cid}")
    assert final["state"] == "completed"
    (target,) = final["targets"]
    assert (target["node_id"], target["state"]) == ("k8s-e2e", "applied")
    outcomes = {o["workload_id"]: o for o in target["outcomes"]}
    assert outcomes[f"{ns}/Deployment/llm"]["outcome"] == "applied"
    assert outcomes["node/gpu-node-0"]["detail"] == "Cordoned"

    mirrored = rig.correction(f"ctl-{cid}")
    assert mirrored["spec"]["action"] == "shutdown"
    assert mirrored["spec"]["controllerCorrectionId"] == cid
    assert mirrored["spec"]["scope"] == {"all": True, "gpuWorkloadsOnly": True}
    assert mirrored["status"]["phase"] == "Applied"
    assert target["message"] == mirrored["status"]["message"]
    assert rig.replicas("Deployment", "llm") == 0
    assert rig.replicas("Deployment", "embed") == 0
    for name in SESSION_NODES:
        fenced = rig.node(name)
        assert fenced.spec.unschedulable is True
        assert [(t.value, t.effect) for t in fenced.spec.taints if t.key == TAINT] == [
            (f"ctl-{cid}", "NoSchedule")
        ]
    rig.wait_running("llm", 0)
    wait_for(
        lambda: ours(cluster, ns)[f"{ns}/Deployment/llm"]["state"] == "terminated",
        30,
        "the report to show the workload terminated",
    )

    resumed = cluster.cli("resume", cid, "--wait", "-o", "json")

    assert resumed.code == 0, resumed.err
    resume_id = resumed.json()["spec"]["correction_id"]
    rig.applied.append(f"ctl-{resume_id}")
    assert rig.correction(f"ctl-{cid}")["status"]["phase"] == "Reverted"
    assert rig.replicas("Deployment", "llm") == 2
    assert rig.replicas("Deployment", "embed") == 1
    for name in SESSION_NODES:
        node_now = rig.node(name)
        assert not node_now.spec.unschedulable
        assert not [t for t in node_now.spec.taints or [] if t.key == TAINT]
    rig.wait_running("llm", 2)
    rig.wait_running("embed", 1)
    status = cluster.cli("status", cid, "-o", "json").json()
    assert status["state"] == "reverted"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SecureSetup:
    """A CA, the controller's certificate, two people with client certificates and keys."""
    return SecureSetup(tmp_path_factory.mktemp("pki"), quorum={"shutdown": 1}).create(
        {"admin": "admin", "alice": "operator"}
    )


def test_a_signed_pause_reaches_an_enrolled_operator_over_mutual_tls(
    crd: ControlPlane, namespace: str, pki: SecureSetup, tmp_path: Path
) -> None:
    cluster = LocalCluster(tmp_path, insecure=False)
    admin, alice = pki.people["admin"].env(), pki.people["alice"].env()
    rig = Rig(crd, namespace)
    operator: OperatorProcess | None = None
    try:
        cluster.start_controller("127.0.0.1:0", *pki.controller_args(), "--report-interval", "1")
        # The cluster joins like a node: a one-time token, then its own certificate.
        token = cluster.cli("pki", "token", "--node", "k8s-secure", env=admin)
        assert token.code == 0, token.err
        backstop(
            "agent", "enroll", "--enrol-address", cluster.enrol_address,
            "--token", token.out.split()[0], "--ca", str(pki.ca_dir / "ca.crt"),
            "--node-id", "k8s-secure", "--state-dir", str(tmp_path / "operator-state"),
        )  # fmt: skip
        operator = OperatorProcess(
            crd,
            tmp_path,  # its state dir is tmp_path/operator-state, where enrol put tls/
            "--cluster-name",
            "secure",
            "--resync",
            "1",
            "--trust-policy",
            str(pki.policy),
            global_args=("--controller", cluster.address),
        )
        operator.start()
        rig.deployment("llm", 1)
        rig.deployment("other", 1, labels={"team": "b"})
        rig.wait_running("llm", 1)
        wait_for(
            lambda: any(
                n["node_id"] == "k8s-secure" and n["connected"]
                for n in cluster.cli("nodes", "-o", "json", env=alice).json()
            ),
            30,
            "the enrolled operator to connect",
        )

        paused = cluster.cli(
            "pause", "--selector", f"backstop.io/namespace={namespace},app=llm",
            "--reason", "signed", "--yes", "--wait", env=alice,
        )  # fmt: skip

        assert paused.code == 0, paused.err + paused.out
        cid = paused.out.split()[0]
        rig.applied.append(f"ctl-{cid}")
        assert rig.replicas("Deployment", "llm") == 0
        assert rig.replicas("Deployment", "other") == 1
        assert rig.correction(f"ctl-{cid}")["spec"]["scope"]["selector"] == {
            "matchExpressions": [
                {"key": "backstop.io/namespace", "operator": "In", "values": [namespace]},
                {"key": "app", "operator": "In", "values": ["llm"]},
            ]
        }
        resumed = cluster.cli("resume", cid, "--reason", "reviewed", "--wait", env=alice)
        assert resumed.code == 0, resumed.err + resumed.out
        rig.applied.append(f"ctl-{resumed.out.split()[0]}")
        assert rig.replicas("Deployment", "llm") == 1
        rig.wait_running("llm", 1)
    finally:
        try:
            rig.cleanup()
        finally:
            if operator is not None:
                operator.stop()
            cluster.stop()
