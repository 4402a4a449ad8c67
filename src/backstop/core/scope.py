"""Parsing and matching of correction scopes (``--selector``, ``--model``, ``--node``)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from backstop.core.errors import InvalidInput
from backstop.core.models import Scope, Workload

_LABEL_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
MIN_HASH_PREFIX = 12
_HEX = re.compile(rf"^[0-9a-f]{{{MIN_HASH_PREFIX},64}}$")
LABEL_KEY_RULE = (
    "a label key is [PREFIX/]NAME: NAME is 1-63 characters of A-Z a-z 0-9 - _ . beginning "
    "and ending with a letter or digit; PREFIX is a DNS subdomain (lower case, at most 253)"
)
LABEL_VALUE_RULE = (
    "a label value is empty or 1-63 characters of A-Z a-z 0-9 - _ . beginning and ending "
    "with a letter or digit"
)


KIND_LABEL = "backstop.io/kind"
"""The label the agent sets on every workload: process, container or unattributed."""
UNATTRIBUTED = "unattributed"
"""The kind of GPU use the agent cannot attribute to one of its processes."""
NAMESPACE_LABELS = ("backstop.io/namespace", "io.kubernetes.pod.namespace")
"""Where a workload's Kubernetes namespace is: the operator's or the node agent's label, else
the container runtime's."""
NAMESPACE_LABEL = NAMESPACE_LABELS[0]
POD_LABEL = "backstop.io/pod"
"""The pod a node agent attributed the workload to (with :data:`NAMESPACE_LABEL`)."""
CONTAINER_LABEL = "backstop.io/container"
POD_UID_LABEL = "backstop.io/pod-uid"
GPU_ALLOCATION_LABEL = "backstop.io/gpu-allocation"
"""``allocated`` or ``unallocated``: whether the workload's container holds the GPUs it uses."""
UNALLOCATED = "unallocated"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def workload_namespace(workload: Workload) -> str | None:
    """The workload's Kubernetes namespace (:data:`NAMESPACE_LABELS`), ``None`` when unknown."""
    return next((workload.labels[k] for k in NAMESPACE_LABELS if k in workload.labels), None)


def kubernetes_selector(namespace: str, pod: str) -> tuple[tuple[str, str, bool], ...]:
    """``--namespace NS`` and ``--pod NS/NAME`` as requirements on the pod labels.

    Raises :class:`InvalidInput` for a name Kubernetes would not accept, for a pod in another
    namespace than ``--namespace``, and for a pod name too long for a label value (then its
    UID selects it: ``backstop.io/pod-uid=UID``).
    """
    namespaces = [namespace] if namespace else []
    name = ""
    if pod:
        pod_namespace, slash, name = pod.partition("/")
        if not slash or not name:
            raise InvalidInput(f"--pod {pod!r}: expected NAMESPACE/NAME")
        namespaces.append(pod_namespace)
        if not _DNS_SUBDOMAIN.match(name):
            raise InvalidInput(f"--pod {pod!r}: {name!r} is not a pod name")
        if not is_label(POD_LABEL, name):
            raise InvalidInput(
                f"--pod {pod!r}: names over 63 characters cannot be matched by label; "
                f"select the pod by its UID: --selector {POD_UID_LABEL}=UID"
            )
    for ns in namespaces:
        if not _DNS_LABEL.match(ns):
            raise InvalidInput(f"{ns!r} is not a Kubernetes namespace name")
    if len(set(namespaces)) > 1:
        raise InvalidInput(f"--pod {pod!r} is not in --namespace {namespace!r}")
    selector = [(NAMESPACE_LABEL, namespaces[0], True)] if namespaces else []
    if name:
        selector.append((POD_LABEL, name, True))
    return tuple(selector)


def parse_selector(text: str) -> tuple[tuple[str, str, bool], ...]:
    """Parse ``k=v,k2!=v2`` (Kubernetes equality syntax) into requirements.

    Raises :class:`InvalidInput` naming the bad term; an empty string is refused
    because a correction that silently selects everything is never intended.
    """
    terms = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in terms):
        raise InvalidInput(f"malformed selector {text!r}: expected key=value[,key2!=value2]")
    requirements: list[tuple[str, str, bool]] = []
    for term in terms:
        if "!=" in term:
            key, value = term.split("!=", 1)
            equal = False
        elif "==" in term:
            key, value = term.split("==", 1)
            equal = True
        elif "=" in term:
            key, value = term.split("=", 1)
            equal = True
        else:
            raise InvalidInput(
                f"malformed selector term {term!r}: expected key=value or key!=value"
            )
        key, value = key.strip(), value.strip()
        try:
            check_label(key, value)
        except InvalidInput as exc:
            raise InvalidInput(f"malformed selector term {term!r}: {exc.message}") from None
        requirements.append((key, value, equal))
    return tuple(requirements)


def _is_key(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if "/" in key and not (0 < len(prefix) <= 253 and _LABEL_PREFIX.match(prefix)):
        return False
    return len(name) <= 63 and bool(_LABEL_NAME.match(name))


def _is_value(value: str) -> bool:
    return not value or (len(value) <= 63 and bool(_LABEL_NAME.match(value)))


def is_label(key: str, value: str) -> bool:
    """Whether ``key=value`` is a label a selector can name (Kubernetes label syntax)."""
    return _is_key(key) and _is_value(value)


def check_label(key: str, value: str) -> None:
    """Refuse a label key or value outside Kubernetes label syntax, saying the rule."""
    if not _is_key(key):
        raise InvalidInput(f"{key!r} is not a valid label key ({LABEL_KEY_RULE})")
    if not _is_value(value):
        raise InvalidInput(f"{value!r} is not a valid label value ({LABEL_VALUE_RULE})")


def format_selector(selector: Iterable[tuple[str, str, bool]]) -> str:
    return ",".join(f"{k}={v}" if eq else f"{k}!={v}" for k, v, eq in selector)


def parse_model_hash(text: str) -> str:
    value = text.strip().lower().removeprefix("sha256:")
    if not _HEX.match(value):
        raise InvalidInput(
            f"malformed model hash {text!r}: expected {MIN_HASH_PREFIX} to 64 hex digits "
            "(a shorter prefix matches too many models)"
        )
    return value


def selector_matches(selector: Iterable[tuple[str, str, bool]], labels: Mapping[str, str]) -> bool:
    for key, value, equal in selector:
        present = labels.get(key)
        if equal and present != value:
            return False
        if not equal and present == value:
            return False
    return True


def node_in_scope(scope: Scope, node_id: str) -> bool:
    """Whether a correction with this scope must be sent to the node at all."""
    return scope.all or not scope.node_ids or node_id in scope.node_ids


def workload_in_scope(scope: Scope, workload: Workload) -> bool:
    """Whether a workload on a node in scope is covered by the correction."""
    if not node_in_scope(scope, workload.node_id):
        return False
    if scope.all:
        return True
    if scope.workload_ids and workload.workload_id not in scope.workload_ids:
        return False
    if scope.selector and not selector_matches(scope.selector, workload.labels):
        return False
    if scope.model_hashes:
        model = workload.fingerprint.model
        hashes = [workload.fingerprint.model_hash, model.model_id if model else ""]
        hashes += [w.sampled_sha256 for w in workload.fingerprint.weights]
        hashes += [w.header_sha256 for w in workload.fingerprint.weights]
        if not any(h and h.startswith(p) for p in scope.model_hashes for h in hashes):
            return False
    return not scope.empty


def validate_scope(scope: Scope) -> None:
    if scope.empty:
        raise InvalidInput(
            "empty scope: give --all, --node, --selector, --namespace, --pod, --model or --workload"
        )
    if scope.all and (scope.node_ids or scope.selector or scope.model_hashes or scope.workload_ids):
        raise InvalidInput("--all cannot be combined with other scope flags")
    for key, value, _ in scope.selector:
        check_label(key, value)
    for prefix in scope.model_hashes:
        if not _HEX.match(prefix):
            raise InvalidInput(
                f"malformed model hash {prefix!r}: expected {MIN_HASH_PREFIX} to 64 hex digits"
            )
