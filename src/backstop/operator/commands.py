"""Controller commands as Correction manifests (or as nothing to do in this cluster).

A controller correction ``cor-X`` becomes the Correction ``ctl-cor-X``, so a redelivered
command finds the Correction it already made. Scope mapping (the controller ANDs criteria):

- ``all``, or only this cluster's node id: every GPU workload (``scope.all``);
- ``--selector k=v,k2!=v2``: ``matchExpressions`` In / NotIn over the labels the operator
  reports (so ``backstop.io/framework=vllm`` works as it does on node agents);
- ``--workload``: the ids that are this cluster's (``namespace/Kind/name``);
- ``--node`` naming other nodes only, or ``--model`` hashes (Kubernetes objects carry none;
  node agents fingerprint weights): nothing here.

``observe`` and ``throttle`` act on node agents' sampling and GPUs; at the orchestrator level
there is nothing to do, and the acknowledgement says so. Pure.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from backstop.core.models import Action, CorrectionSpec
from backstop.operator import crd

SOURCE_LABEL = "backstop.io/source"
ISSUER_ANNOTATION = "backstop.io/issuer"
EXPIRES_ANNOTATION = "backstop.io/expires-at"
_OWN_WORKLOAD_ID = re.compile(
    r"^[a-z0-9-]+/(Deployment|StatefulSet|Pod)/[a-z0-9.-]+$|^k8s-[0-9a-f]{32}$"
)


@dataclass(frozen=True, slots=True)
class NothingHere:
    """The command selects nothing in this cluster; acknowledged as applied with ``message``."""

    message: str


@dataclass(frozen=True, slots=True)
class MakeCorrection:
    """Create (or find) this Correction and report its outcome."""

    name: str
    manifest: dict[str, Any]


def correction_name(correction_id: str) -> str:
    """The Correction a controller correction becomes."""
    return f"ctl-{correction_id}"


def _metadata(spec: CorrectionSpec) -> dict[str, Any]:
    expires = dt.datetime.fromtimestamp(spec.expires_at_s, dt.UTC)
    return {
        "name": correction_name(spec.correction_id),
        "labels": {SOURCE_LABEL: "controller"},
        "annotations": {
            ISSUER_ANNOTATION: spec.issuer,
            EXPIRES_ANNOTATION: expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }


def _manifest(spec: CorrectionSpec, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": crd.API_VERSION,
        "kind": crd.KIND,
        "metadata": _metadata(spec),
        "spec": {
            "reason": spec.reason,
            "controllerCorrectionId": spec.correction_id,
            **body,
        },
    }


def _nothing_selected(spec: CorrectionSpec, node_id: str, own_workloads: list[str]) -> str:
    """Why ``spec``'s scope selects nothing in this cluster (empty when it may select)."""
    scope = spec.scope
    if scope.node_ids and node_id not in scope.node_ids:
        return f"{node_id} is not among the correction's nodes; nothing to do"
    if scope.model_hashes:
        return (
            "Kubernetes objects carry no model hash (node agents fingerprint weights); "
            "nothing selected in this cluster"
        )
    if scope.workload_ids and not own_workloads:
        return "none of the workload ids is a Kubernetes workload; nothing to do"
    return ""


def plan(spec: CorrectionSpec, node_id: str) -> NothingHere | MakeCorrection:
    """What ``spec`` means for the cluster whose node id is ``node_id``."""
    name = correction_name(spec.correction_id)
    if spec.action is Action.OBSERVE:
        return NothingHere("observe raises node agents' sampling; nothing to do for Kubernetes")
    if spec.action is Action.THROTTLE:
        return NothingHere("throttle caps GPUs through node agents; nothing to do for Kubernetes")
    if spec.action is Action.RESUME:
        body = {"action": "resume", "resumes": correction_name(spec.reverts)}
        return MakeCorrection(name, _manifest(spec, body))
    scope = spec.scope
    ours = [w for w in scope.workload_ids if _OWN_WORKLOAD_ID.match(w)]
    nothing = _nothing_selected(spec, node_id, ours)
    if nothing:
        return NothingHere(nothing)
    crd_scope: dict[str, Any] = {"gpuWorkloadsOnly": True}
    if ours:
        crd_scope["workloads"] = ours
    if scope.selector:
        crd_scope["selector"] = {
            "matchExpressions": [
                {"key": key, "operator": "In" if equal else "NotIn", "values": [value]}
                for key, value, equal in scope.selector
            ]
        }
    if not (scope.workload_ids or scope.selector):
        crd_scope["all"] = True
    return MakeCorrection(name, _manifest(spec, {"action": spec.action.value, "scope": crd_scope}))
