"""Which workloads and nodes a Correction's scope selects.

A *workload* here is what the operator can correct: a Deployment or StatefulSet (scaled to
zero), or a pod. Pods whose controller is a Deployment's ReplicaSet or a StatefulSet are part of
that workload; a pod with no controller is a bare pod (deleted); a pod with another controller
(DaemonSet, Job, a ReplicaSet of its own...) is reported as skipped, since deleting it would only
make its controller start another.

Scope rules (criteria are ANDed; an empty scope selects nothing):

- ``all``: no restriction;
- ``namespaces``: only these; without it, ``kube-system``, ``kube-public`` and
  ``kube-node-lease`` are never selected (name them to include them);
- ``gpuWorkloadsOnly`` (default true): only workloads whose pods request an NVIDIA GPU
  (``nvidia.com/gpu`` or a MIG slice ``nvidia.com/mig-*``);
- ``selector``: over :func:`workload_labels` (the object's labels, its pod template's labels,
  and ``backstop.io/{kind,name,namespace,framework}``, the same labels the operator reports to
  the controller, so a controller ``--selector`` means the same thing here);
- ``nodes``: only workloads with a pod on one of these nodes; for shutdown, only these nodes
  are fenced (without it, every node with GPU capacity is);
- ``workloads``: only these workload ids.

Objects labelled ``backstop.io/exempt: "true"`` are never selected. Pure: no I/O.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from backstop.operator.crd import ClusterScope
from backstop.operator.frameworks import framework_of_images

PROTECTED_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})
GPU_RESOURCE = "nvidia.com/gpu"
MIG_RESOURCE_PREFIX = "nvidia.com/mig-"
MAX_WORKLOAD_ID = 128

LABEL_KIND = "backstop.io/kind"
LABEL_NAME = "backstop.io/name"
LABEL_NAMESPACE = "backstop.io/namespace"
LABEL_FRAMEWORK = "backstop.io/framework"


class WorkloadKind(enum.StrEnum):
    """The kinds of object a Correction acts on."""

    DEPLOYMENT = "Deployment"
    STATEFULSET = "StatefulSet"
    POD = "Pod"

    @property
    def scalable(self) -> bool:
        return self is not WorkloadKind.POD


def workload_id(namespace: str, kind: str, name: str) -> str:
    """``namespace/Kind/name``; a hash of it when longer than the wire's 128 characters."""
    text = f"{namespace}/{kind}/{name}"
    if len(text) <= MAX_WORKLOAD_ID:
        return text
    return "k8s-" + hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class WorkloadView:
    """What the operator needs to know about one workload."""

    kind: WorkloadKind
    namespace: str
    name: str
    uid: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    template_labels: Mapping[str, str] = field(default_factory=dict)
    gpus_per_pod: int = 0
    replicas: int | None = None
    """Desired replicas (None for a pod)."""
    nodes: frozenset[str] = frozenset()
    """Nodes its pods are bound to."""
    images: tuple[str, ...] = ()
    holders: tuple[str, ...] = ()
    previous_replicas: int | None = None
    controller: str = ""
    """For a pod: ``Kind/name`` of a controller the operator does not scale; else empty."""
    deleting: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """The object as listed, for computing patches without another read."""

    @property
    def workload_id(self) -> str:
        return workload_id(self.namespace, self.kind.value, self.name)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind.value, self.namespace, self.name)

    @property
    def exempt(self) -> bool:
        return self.labels.get("backstop.io/exempt") == "true"

    @property
    def framework(self) -> str:
        return framework_of_images(self.images)


@dataclass(frozen=True, slots=True)
class NodeView:
    """A node with GPU capacity."""

    name: str
    gpus: int
    unschedulable: bool = False
    holders: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


def workload_labels(w: WorkloadView) -> dict[str, str]:
    """The labels a workload is reported with and selected by."""
    labels = {**w.labels, **w.template_labels}
    labels[LABEL_KIND] = w.kind.value.lower()
    labels[LABEL_NAME] = w.name
    labels[LABEL_NAMESPACE] = w.namespace
    if w.framework:
        labels[LABEL_FRAMEWORK] = w.framework
    return labels


def selects(scope: ClusterScope, w: WorkloadView, *, ignore_nodes: bool = False) -> bool:
    """Whether ``scope`` covers ``w``; ``ignore_nodes`` when its pods are not known yet."""
    in_namespaces = (
        w.namespace in scope.namespaces
        if scope.namespaces
        else w.namespace not in PROTECTED_NAMESPACES
    )
    return (
        not w.exempt
        and scope.names_something
        and in_namespaces
        and (w.gpus_per_pod > 0 or not scope.gpu_workloads_only)
        and (not scope.workloads or w.workload_id in scope.workloads)
        and (scope.selector is None or scope.selector.matches(workload_labels(w)))
        and (ignore_nodes or not scope.nodes or bool(w.nodes & frozenset(scope.nodes)))
    )


def fences(scope: ClusterScope, node: NodeView) -> bool:
    """Whether a shutdown with ``scope`` fences ``node``."""
    if not scope.names_something or node.gpus <= 0:
        return False
    if node.labels.get("backstop.io/exempt") == "true":
        return False
    return not scope.nodes or node.name in scope.nodes


def _quantity(raw: object) -> int:
    try:
        return max(0, int(str(raw)))
    except ValueError:
        return 0


def _container_gpus(container: Mapping[str, Any]) -> int:
    resources = container.get("resources") or {}
    total = 0
    for section in ("limits", "requests"):
        for name, value in (resources.get(section) or {}).items():
            if name == GPU_RESOURCE or name.startswith(MIG_RESOURCE_PREFIX):
                total = max(total, _quantity(value))
    return total


def pod_gpus(pod_spec: Mapping[str, Any]) -> int:
    """GPUs one pod requests: the sum over its containers, or its largest init container."""
    main = sum(_container_gpus(c) for c in pod_spec.get("containers") or [])
    init = max((_container_gpus(c) for c in pod_spec.get("initContainers") or []), default=0)
    return max(main, init)


def pod_images(pod_spec: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(
        str(c.get("image", "")) for c in pod_spec.get("containers") or [] if c.get("image")
    )
