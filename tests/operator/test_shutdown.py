"""Shutdown fences GPU nodes so nothing new lands on them; resume lifts exactly that fence."""

from __future__ import annotations

from kubernetes import client as k8s

from tests.operator.rig import Rig, poll, shutdown

TAINT = "backstop.io/shutdown"


def our_taints(node: k8s.V1Node) -> list[k8s.V1Taint]:
    return [t for t in node.spec.taints or [] if t.key == TAINT]


def scheduling_refusal(rig: Rig, pod: str) -> str | None:
    found = rig.core.read_namespaced_pod(pod, rig.namespace)
    for condition in found.status.conditions or []:
        if condition.type == "PodScheduled" and condition.reason == "Unschedulable":
            return str(condition.message)
    return None


def test_shutdown_cordons_and_taints_the_gpu_nodes_and_resume_restores_them(rig: Rig) -> None:
    pool = f"pool-{rig.namespace}"
    fenced = [f"{rig.namespace}-a", f"{rig.namespace}-b"]
    cordoned_before = f"{rig.namespace}-c"
    for node in [*fenced, cordoned_before]:
        rig.gpu_node(node, **{"backstop.test/pool": pool})
    rig.core.patch_node(cordoned_before, {"spec": {"unschedulable": True}})
    rig.deployment("llm", 2, node_selector={"backstop.test/pool": pool})
    rig.wait_running("llm", 2)

    name = f"shutdown-{rig.namespace}"
    rig.apply(shutdown(name, [*fenced, cordoned_before]))
    status = rig.wait_phase(name, "Applied")["status"]

    assert status["message"] == "1 Deployment scaled to 0, 3 nodes cordoned and tainted"
    assert status["targetCount"] == 4
    nodes = {t["name"]: t for t in status["targets"] if t["kind"] == "Node"}
    assert nodes[cordoned_before]["message"] == "was cordoned before"
    for node_name in [*fenced, cordoned_before]:
        node = rig.node(node_name)
        assert node.spec.unschedulable is True
        (taint,) = our_taints(node)
        assert (taint.value, taint.effect) == (name, "NoSchedule")
        assert node.metadata.annotations["backstop.io/correction"] == name
    assert rig.node(fenced[0]).metadata.annotations["backstop.io/previous-unschedulable"] == (
        "false"
    )
    rig.wait_running("llm", 0)
    fence_events = rig.core.list_namespaced_event(
        "default", field_selector=f"involvedObject.name={fenced[0]}"
    ).items
    assert any(e.reason == "BackstopNodeFenced" for e in fence_events)

    # Nothing new lands on the fenced nodes: a GPU pod that may only go there stays Pending.
    rig.bare_pod("latecomer", node_selector={"backstop.test/pool": pool})
    refusal = poll(lambda: scheduling_refusal(rig, "latecomer"), "the scheduler to refuse it")
    assert "untolerated taint" in refusal or "unschedulable" in refusal
    pod = rig.core.read_namespaced_pod("latecomer", rig.namespace)
    assert pod.spec.node_name is None
    assert pod.status.phase == "Pending"

    resumed = f"resume-{rig.namespace}"
    rig.apply(
        f"""
apiVersion: backstop.io/v1
kind: Correction
metadata: {{name: {resumed}}}
spec: {{action: resume, resumes: {name}, reason: contained}}
"""
    )
    status = rig.wait_phase(resumed, "Applied")["status"]
    assert status["message"] == (
        "1 Deployment restored to its previous replicas, 3 nodes uncordoned"
    )
    for node_name in fenced:
        node = rig.node(node_name)
        assert not node.spec.unschedulable
        assert our_taints(node) == []
        assert "backstop.io/correction" not in (node.metadata.annotations or {})
    # The node cordoned before the shutdown stays cordoned; only the taint goes.
    before = rig.node(cordoned_before)
    assert before.spec.unschedulable is True
    assert our_taints(before) == []
    rig.wait_running("llm", 2)
    assert {p.spec.node_name for p in rig.running("llm")} <= set(fenced)
    rig.wait_running("latecomer", 1)
