"""Which workloads and nodes a scope selects, from objects shaped as the API server lists them
(pods joined to their Deployment through its ReplicaSet, or to their StatefulSet)."""

from __future__ import annotations

from typing import Any

import pytest

from backstop.operator.crd import ClusterScope, Selector, parse_selector
from backstop.operator.inventory import build_gpu_nodes, build_workloads
from backstop.operator.scope import (
    NodeView,
    WorkloadKind,
    WorkloadView,
    fences,
    pod_gpus,
    selects,
    workload_id,
    workload_labels,
)


def container(gpus: int = 0, image: str = "vllm/vllm-openai:v0.6", mig: str = "") -> dict[str, Any]:
    limits = {"nvidia.com/gpu": str(gpus)} if gpus else {}
    if mig:
        limits[mig] = "1"
    return {"name": "c", "image": image, "resources": {"limits": limits}}


def owned(kind: str, name: str) -> list[dict[str, Any]]:
    return [{"kind": kind, "name": name, "controller": True, "uid": "u"}]


def obj(kind: str, name: str, ns: str = "serving", **extra: Any) -> dict[str, Any]:
    meta = {"name": name, "namespace": ns, "uid": f"{kind}-{name}", **extra.pop("meta", {})}
    return {"kind": kind, "metadata": meta, **extra}


def controller(
    name: str, gpus: int, labels: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    return obj(
        "Deployment",
        name,
        meta={"labels": {"team": "a"}},
        spec={
            "replicas": 2,
            "template": {
                "metadata": {"labels": {"app": name, **(labels or {})}},
                "spec": {"containers": [container(gpus)]},
            },
            **spec,
        },
    )


def pod(
    name: str,
    node: str | None,
    owners: list[dict[str, Any]] | None = None,
    gpus: int = 1,
    phase: str = "Running",
) -> dict[str, Any]:
    meta: dict[str, Any] = {"labels": {"app": name}}
    if owners:
        meta["ownerReferences"] = owners
    spec: dict[str, Any] = {"containers": [container(gpus)]}
    if node:
        spec["nodeName"] = node
    return obj("Pod", name, meta=meta, spec=spec, status={"phase": phase})


@pytest.fixture
def views() -> dict[str, WorkloadView]:
    deployments = [controller("llm", 1), controller("web", 0)]
    statefulsets = [
        obj(
            "StatefulSet",
            "ranker",
            spec={"replicas": 1, "template": {"spec": {"containers": [container(2)]}}},
        )
    ]
    replicasets = [
        obj("ReplicaSet", "llm-5d8f", meta={"ownerReferences": owned("Deployment", "llm")})
    ]
    pods = [
        pod("llm-5d8f-a", "gpu-0", owned("ReplicaSet", "llm-5d8f")),
        pod("llm-5d8f-b", "gpu-1", owned("ReplicaSet", "llm-5d8f")),
        pod("ranker-0", "gpu-1", owned("StatefulSet", "ranker")),
        pod("scratch", "gpu-0"),
        pod("pending", None),
        pod("exporter-x", "gpu-0", owned("DaemonSet", "exporter")),
        pod("done", "gpu-0", phase="Succeeded"),
    ]
    return {v.name: v for v in build_workloads(deployments, statefulsets, replicasets, pods)}


def test_pods_join_their_workloads_and_loose_pods_stand_alone(
    views: dict[str, WorkloadView],
) -> None:
    assert set(views) == {"llm", "web", "ranker", "scratch", "pending", "exporter-x"}
    assert views["llm"].kind is WorkloadKind.DEPLOYMENT
    assert views["llm"].nodes == frozenset({"gpu-0", "gpu-1"})
    assert views["llm"].replicas == 2
    assert views["ranker"].nodes == frozenset({"gpu-1"})
    assert views["ranker"].gpus_per_pod == 2
    assert views["scratch"].controller == ""
    assert views["exporter-x"].controller == "DaemonSet/exporter"
    assert views["pending"].nodes == frozenset()


def test_the_reported_labels_join_object_template_and_backstop_labels(
    views: dict[str, WorkloadView],
) -> None:
    assert workload_labels(views["llm"]) == {
        "team": "a",
        "app": "llm",
        "backstop.io/kind": "deployment",
        "backstop.io/name": "llm",
        "backstop.io/namespace": "serving",
        "backstop.io/framework": "vllm",
    }
    assert views["llm"].workload_id == "serving/Deployment/llm"


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        (ClusterScope(), set()),
        (ClusterScope(all=True), {"llm", "ranker", "scratch", "pending", "exporter-x"}),
        (
            ClusterScope(all=True, gpu_workloads_only=False),
            {"llm", "web", "ranker", "scratch", "pending", "exporter-x"},
        ),
        (ClusterScope(namespaces=("elsewhere",)), set()),
        (ClusterScope(nodes=("gpu-1",)), {"llm", "ranker"}),
        (ClusterScope(workloads=("serving/StatefulSet/ranker",)), {"ranker"}),
        (ClusterScope(selector=parse_selector({"matchLabels": {"app": "llm"}})), {"llm"}),
        (
            ClusterScope(
                selector=parse_selector(
                    {
                        "matchExpressions": [
                            {"key": "backstop.io/kind", "operator": "In", "values": ["pod"]},
                            {"key": "app", "operator": "NotIn", "values": ["pending"]},
                        ]
                    }
                )
            ),
            {"scratch", "exporter-x"},
        ),
        (
            ClusterScope(all=True, selector=Selector()),
            {"llm", "ranker", "scratch", "pending", "exporter-x"},
        ),
    ],
)
def test_scope_criteria_are_anded(
    views: dict[str, WorkloadView], scope: ClusterScope, expected: set[str]
) -> None:
    assert {name for name, v in views.items() if selects(scope, v)} == expected


def test_system_namespaces_are_selected_only_when_named() -> None:
    system = WorkloadView(WorkloadKind.DEPLOYMENT, "kube-system", "dns", gpus_per_pod=1)

    assert not selects(ClusterScope(all=True), system)
    assert selects(ClusterScope(namespaces=("kube-system",)), system)


def test_exempt_objects_are_never_selected() -> None:
    own = WorkloadView(
        WorkloadKind.DEPLOYMENT, "backstop", "controller", labels={"backstop.io/exempt": "true"}
    )
    assert not selects(ClusterScope(all=True, gpu_workloads_only=False), own)


def test_a_watch_event_may_select_before_its_pods_are_known() -> None:
    fresh = WorkloadView(WorkloadKind.DEPLOYMENT, "serving", "llm", gpus_per_pod=1)
    scope = ClusterScope(nodes=("gpu-0",))

    assert not selects(scope, fresh)
    assert selects(scope, fresh, ignore_nodes=True)


def test_gpu_requests_count_containers_init_containers_and_mig_slices() -> None:
    assert pod_gpus({"containers": [container(1), container(2)]}) == 3
    assert pod_gpus({"containers": [container(1)], "initContainers": [container(4)]}) == 4
    assert pod_gpus({"containers": [container(mig="nvidia.com/mig-1g.10gb")]}) == 1
    assert pod_gpus({"containers": [container(0)]}) == 0


def test_gpu_nodes_and_the_nodes_a_shutdown_fences() -> None:
    nodes = build_gpu_nodes(
        [
            {"metadata": {"name": "gpu-0"}, "status": {"capacity": {"nvidia.com/gpu": "8"}}},
            {"metadata": {"name": "cpu-0"}, "status": {"capacity": {"cpu": "64"}}},
            {
                "metadata": {"name": "gone-gpu", "annotations": {"backstop.io/correction": "s"}},
                "status": {"capacity": {}},
            },
        ]
    )
    assert [(n.name, n.gpus, n.holders) for n in nodes] == [
        ("gpu-0", 8, ()),
        ("gone-gpu", 0, ("s",)),
    ]
    gpu = NodeView("gpu-0", 8)
    assert fences(ClusterScope(all=True), gpu)
    assert fences(ClusterScope(namespaces=("serving",)), gpu)
    assert not fences(ClusterScope(nodes=("gpu-9",)), gpu)
    assert not fences(ClusterScope(), gpu)
    assert not fences(ClusterScope(all=True), NodeView("cpu-0", 0))


def test_a_workload_id_too_long_for_the_wire_is_hashed() -> None:
    long_name = "x" * 200
    ident = workload_id("serving", "Deployment", long_name)
    assert ident.startswith("k8s-")
    assert len(ident) == 36
    assert ident == workload_id("serving", "Deployment", long_name)
