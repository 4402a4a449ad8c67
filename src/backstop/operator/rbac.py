"""The Kubernetes permissions the operator needs, and no more (its ClusterRole's rules).

The chart renders these into the operator's ClusterRole; a test runs the operator as a service
account bound to exactly these rules. Everything is cluster-wide: Corrections and nodes are
cluster-scoped, and a Correction may span namespaces.
"""

from __future__ import annotations

from typing import Any

CLUSTER_ROLE_RULES: tuple[dict[str, Any], ...] = (
    # The Correction resource: watch it, create it from controller commands, manage its
    # finalizer (patch) and write its status.
    {
        "apiGroups": ["backstop.io"],
        "resources": ["corrections"],
        "verbs": ["get", "list", "watch", "create", "patch"],
    },
    {"apiGroups": ["backstop.io"], "resources": ["corrections/status"], "verbs": ["get", "patch"]},
    # Workloads: hold at zero and restore (patch), watched so a scale-up is undone at once.
    {
        "apiGroups": ["apps"],
        "resources": ["deployments", "statefulsets"],
        "verbs": ["get", "list", "watch", "patch"],
    },
    # ReplicaSets only to join pods to their Deployment.
    {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["list"]},
    # Bare pods are deleted; all pods are listed to find GPU workloads and where they run.
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "delete"]},
    # GPU nodes: cordon and taint (patch), and lift it.
    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "patch"]},
    # Events on what it touches.
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
)
