"""core/v1 Events on the objects the operator touches, so ``kubectl describe`` says why.

An Event that cannot be written (a namespace being deleted, a missing permission) is logged and
never fails the correction it describes.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
from collections.abc import Mapping

from backstop.core.errors import BackstopError
from backstop.operator.crd import COMPONENT
from backstop.operator.kube import KubeApi

log = logging.getLogger(__name__)

EVENTS_NAMESPACE_FOR_CLUSTER_OBJECTS = "default"
"""Nodes and Corrections are cluster-scoped; their Events go here, as the kubelet's do."""
MAX_MESSAGE = 1024


class EventRecorder:
    """Writes Events as ``backstop-operator`` on this host."""

    def __init__(self, kube: KubeApi, instance: str = "") -> None:
        self._kube = kube
        self._instance = instance or f"{socket.gethostname()}-{os.getpid()}"

    def emit(
        self, involved: Mapping[str, str], reason: str, message: str, *, warning: bool = False
    ) -> None:
        """Record ``reason``/``message`` about ``involved`` (apiVersion, kind, name, ...)."""
        namespace = involved.get("namespace") or EVENTS_NAMESPACE_FOR_CLUSTER_OBJECTS
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "metadata": {
                "generateName": f"{involved.get('name', 'object')}.",
                "namespace": namespace,
            },
            "involvedObject": dict(involved),
            "reason": reason,
            "message": message[:MAX_MESSAGE],
            "type": "Warning" if warning else "Normal",
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self._kube.create_event(namespace, body)
        except BackstopError as exc:
            log.warning(
                "could not record an event",
                extra={"reason": reason, "object": involved.get("name"), "error": exc.message},
            )


def reference(obj: Mapping[str, object], api_version: str, kind: str) -> dict[str, str]:
    """The ``involvedObject`` for ``obj`` (its JSON as listed)."""
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    ref = {
        "apiVersion": api_version,
        "kind": kind,
        "name": str(meta.get("name", "")),
        "uid": str(meta.get("uid", "")),
    }
    if meta.get("namespace"):
        ref["namespace"] = str(meta["namespace"])
    return ref
