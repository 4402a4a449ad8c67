"""The cluster's workloads and GPU nodes, as ``scope`` views.

``build_workloads`` and ``build_gpu_nodes`` are pure: they turn listed objects into views,
joining each pod to its workload through its controller owner references (pod -> ReplicaSet ->
Deployment, pod -> StatefulSet). ``ClusterReader`` lists the objects and calls them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from backstop.operator import marks
from backstop.operator.kube import JsonObject, Kind, KubeApi
from backstop.operator.scope import (
    GPU_RESOURCE,
    NodeView,
    WorkloadKind,
    WorkloadView,
    pod_gpus,
    pod_images,
)

_FINISHED_PHASES = ("Succeeded", "Failed")


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _controller_of(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    for ref in _meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("kind", "")), str(ref.get("name", ""))
    return None


def _scalable_view(kind: WorkloadKind, obj: Mapping[str, Any], nodes: set[str]) -> WorkloadView:
    meta = _meta(obj)
    template = (obj.get("spec") or {}).get("template") or {}
    pod_spec = template.get("spec") or {}
    return WorkloadView(
        kind=kind,
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        labels=dict(meta.get("labels") or {}),
        template_labels=dict((template.get("metadata") or {}).get("labels") or {}),
        gpus_per_pod=pod_gpus(pod_spec),
        replicas=marks.replicas(obj),
        nodes=frozenset(nodes),
        images=pod_images(pod_spec),
        holders=marks.holders(obj),
        previous_replicas=marks.previous_replicas(obj),
        deleting=bool(meta.get("deletionTimestamp")),
        raw=obj,
    )


def scalable_view(kind: WorkloadKind, obj: Mapping[str, Any]) -> WorkloadView:
    """A Deployment or StatefulSet on its own (its pods' nodes unknown), e.g. from a watch."""
    return _scalable_view(kind, obj, set())


def _pod_view(pod: Mapping[str, Any], controller: str) -> WorkloadView:
    meta = _meta(pod)
    spec = pod.get("spec") or {}
    node = spec.get("nodeName")
    return WorkloadView(
        kind=WorkloadKind.POD,
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        labels=dict(meta.get("labels") or {}),
        gpus_per_pod=pod_gpus(spec),
        nodes=frozenset({node} if node else ()),
        images=pod_images(spec),
        controller=controller,
        deleting=bool(meta.get("deletionTimestamp")),
        raw=pod,
    )


def build_workloads(
    deployments: Iterable[JsonObject],
    statefulsets: Iterable[JsonObject],
    replicasets: Iterable[JsonObject],
    pods: Iterable[JsonObject],
) -> list[WorkloadView]:
    """Deployments and StatefulSets (with the nodes their pods are on) and the pods that belong
    to neither (bare, or owned by a controller the operator does not scale)."""
    deployment_of_rs: dict[tuple[str, str], str] = {}
    for rs in replicasets:
        owner = _controller_of(rs)
        if owner is not None and owner[0] == "Deployment":
            deployment_of_rs[(str(_meta(rs).get("namespace", "")), str(_meta(rs).get("name")))] = (
                owner[1]
            )
    nodes: dict[tuple[str, str, str], set[str]] = {}
    loose: list[WorkloadView] = []
    for pod in pods:
        if (pod.get("status") or {}).get("phase") in _FINISHED_PHASES:
            continue
        namespace = str(_meta(pod).get("namespace", ""))
        node = (pod.get("spec") or {}).get("nodeName")
        owner = _controller_of(pod)
        key: tuple[str, str, str] | None = None
        if owner is None:
            loose.append(_pod_view(pod, ""))
            continue
        if owner[0] == "ReplicaSet" and (namespace, owner[1]) in deployment_of_rs:
            key = ("Deployment", namespace, deployment_of_rs[(namespace, owner[1])])
        elif owner[0] == "StatefulSet":
            key = ("StatefulSet", namespace, owner[1])
        if key is None:
            loose.append(_pod_view(pod, f"{owner[0]}/{owner[1]}"))
        elif node:
            nodes.setdefault(key, set()).add(str(node))
    views = []
    for kind, objects in (
        (WorkloadKind.DEPLOYMENT, deployments),
        (WorkloadKind.STATEFULSET, statefulsets),
    ):
        for obj in objects:
            meta = _meta(obj)
            key = (kind.value, str(meta.get("namespace", "")), str(meta.get("name", "")))
            views.append(_scalable_view(kind, obj, nodes.get(key, set())))
    return views + loose


def node_gpus(node: Mapping[str, Any]) -> int:
    """The node's ``nvidia.com/gpu`` capacity."""
    capacity = (node.get("status") or {}).get("capacity") or {}
    try:
        return int(str(capacity.get(GPU_RESOURCE, "0")))
    except ValueError:
        return 0


def build_gpu_nodes(nodes: Iterable[JsonObject]) -> list[NodeView]:
    """The nodes with GPU capacity, and any node a shutdown still fences."""
    views = []
    for node in nodes:
        gpus, holding = node_gpus(node), marks.holders(node)
        if gpus <= 0 and not holding:
            continue
        meta = _meta(node)
        views.append(
            NodeView(
                name=str(meta.get("name", "")),
                gpus=gpus,
                unschedulable=marks.unschedulable(node),
                holders=holding,
                labels=dict(meta.get("labels") or {}),
                raw=node,
            )
        )
    return views


class ClusterReader:
    """Lists what ``build_workloads`` and ``build_gpu_nodes`` need."""

    def __init__(self, kube: KubeApi) -> None:
        self._kube = kube

    def workloads(self, namespaces: Sequence[str] = ()) -> list[WorkloadView]:
        """Workloads in ``namespaces`` (every namespace when empty)."""
        where: Sequence[str | None] = list(namespaces) or [None]
        lists: dict[Kind, list[JsonObject]] = {}
        for kind in (Kind.DEPLOYMENT, Kind.STATEFULSET, Kind.REPLICASET, Kind.POD):
            lists[kind] = [item for ns in where for item in self._kube.list(kind, ns)[0]]
        return build_workloads(
            lists[Kind.DEPLOYMENT], lists[Kind.STATEFULSET], lists[Kind.REPLICASET], lists[Kind.POD]
        )

    def gpu_nodes(self) -> list[NodeView]:
        return build_gpu_nodes(self._kube.list(Kind.NODE)[0])
