"""The thin layer between the operator and the Kubernetes API.

Objects travel as the API server's JSON (``dict``), not as the client's generated models: a
model drops fields its client version does not know, and writing one back would clear them.
Writes are JSON merge patches; the patches built by ``marks`` carry the ``resourceVersion`` they
were computed from, so a concurrent change is refused with 409 Conflict instead of lost.

Errors from the client are mapped onto Backstop's tree, the original attached::

    404 -> NotFound          409 -> Conflict (AlreadyExists for a create)
    401, 403 -> PermissionDenied   400, 422 -> InvalidInput
    410 on a watch -> WatchExpired (relist)   anything else, and transport errors -> Unavailable
"""

from __future__ import annotations

import enum
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from backstop.core.errors import (
    BackstopError,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from backstop.operator import crd

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
REQUEST_TIMEOUT_S = 30.0
_CORRECTIONS = (crd.GROUP, crd.VERSION, crd.PLURAL)
"""Where the custom-objects API finds Corrections: group, version, plural."""
JsonObject = dict[str, Any]


class AlreadyExists(Conflict):
    """A create named an object that already exists."""


class WatchExpired(Unavailable):
    """The watch's resourceVersion is too old (410 Gone): list again, then watch."""


class Kind(enum.StrEnum):
    """The resources the operator reads or writes."""

    DEPLOYMENT = "Deployment"
    STATEFULSET = "StatefulSet"
    REPLICASET = "ReplicaSet"
    POD = "Pod"
    NODE = "Node"
    CORRECTION = "Correction"


def load_api_client(kubeconfig: Path | None = None) -> k8s.ApiClient:
    """A client from ``kubeconfig``; else in-cluster credentials in a pod; else the default
    kubeconfig (``KUBECONFIG`` or ``~/.kube/config``)."""
    try:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            configuration = k8s.Configuration()
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return k8s.ApiClient(configuration)
        config_file = str(kubeconfig) if kubeconfig is not None else None
        api_client = k8s_config.new_client_from_config(config_file=config_file)  # type: ignore[no-untyped-call]
        return cast(k8s.ApiClient, api_client)
    except (k8s_config.ConfigException, OSError, ValueError) as exc:
        where = kubeconfig or "the default kubeconfig"
        raise InvalidInput(f"cannot load Kubernetes credentials from {where}: {exc}") from exc


_BY_STATUS: dict[int, type[BackstopError]] = {
    400: InvalidInput,
    401: PermissionDenied,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    410: WatchExpired,
    422: InvalidInput,
}


def _status_message(exc: ApiException) -> tuple[str, str]:
    """The Status object's message and reason, or the raw body."""
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    try:
        status = json.loads(body) if body else {}
    except ValueError:
        return str(body or exc.reason or ""), ""
    if not isinstance(status, dict):
        return str(body), ""
    return str(status.get("message") or exc.reason or ""), str(status.get("reason") or "")


def map_error(exc: Exception, what: str) -> BackstopError:
    """A Backstop error for a failed call about ``what`` (e.g. ``patch Deployment ns/x``)."""
    if not isinstance(exc, ApiException):
        return Unavailable(f"{what}: the API server cannot be reached: {exc}")
    message, reason = _status_message(exc)
    code = exc.status or 0
    if code == 409 and reason == "AlreadyExists":
        return AlreadyExists(f"{what}: {message}")
    error = _BY_STATUS.get(code)
    if error is None:
        return Unavailable(f"{what}: HTTP {code}: {message}", retry_after=1.0)
    return error(f"{what}: {message}")


def _read_json(response: Any) -> JsonObject:
    data = response.data
    parsed = json.loads(data) if data else {}
    return parsed if isinstance(parsed, dict) else {}


class KubeApi:
    """Typed-free access to the handful of resources the operator uses; thread-safe."""

    def __init__(self, api_client: k8s.ApiClient) -> None:
        self.api_client = api_client
        self._core = k8s.CoreV1Api(api_client)
        self._apps = k8s.AppsV1Api(api_client)
        self._custom = k8s.CustomObjectsApi(api_client)

    # -- plumbing ---------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> JsonObject:
        kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT_S)
        try:
            return _read_json(fn(*args, _preload_content=False, **kwargs))
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise map_error(exc, what) from exc

    def _lister(
        self, kind: Kind, namespace: str | None
    ) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        apps, core = self._apps, self._core
        if kind is Kind.NODE:
            return core.list_node, ()
        if kind is Kind.CORRECTION:
            return self._custom.list_cluster_custom_object, _CORRECTIONS
        table: dict[Kind, tuple[Callable[..., Any], Callable[..., Any]]] = {
            Kind.DEPLOYMENT: (
                apps.list_deployment_for_all_namespaces,
                apps.list_namespaced_deployment,
            ),
            Kind.STATEFULSET: (
                apps.list_stateful_set_for_all_namespaces,
                apps.list_namespaced_stateful_set,
            ),
            Kind.REPLICASET: (
                apps.list_replica_set_for_all_namespaces,
                apps.list_namespaced_replica_set,
            ),
            Kind.POD: (core.list_pod_for_all_namespaces, core.list_namespaced_pod),
        }
        every, one = table[kind]
        return (every, ()) if namespace is None else (one, (namespace,))

    # -- reads ------------------------------------------------------------------------------

    def list(self, kind: Kind, namespace: str | None = None) -> tuple[list[JsonObject], str]:
        """Every object of ``kind`` (in ``namespace``, or everywhere) and the list's version."""
        fn, args = self._lister(kind, namespace)
        where = f" in {namespace}" if namespace else ""
        data = self._call(f"list {kind.value}s{where}", fn, *args)
        items = [i for i in data.get("items") or [] if isinstance(i, dict)]
        return items, str((data.get("metadata") or {}).get("resourceVersion", ""))

    def get(self, kind: Kind, name: str, namespace: str = "") -> JsonObject:
        what = f"get {kind.value} {_path(namespace, name)}"
        if kind is Kind.DEPLOYMENT:
            return self._call(what, self._apps.read_namespaced_deployment, name, namespace)
        if kind is Kind.STATEFULSET:
            return self._call(what, self._apps.read_namespaced_stateful_set, name, namespace)
        if kind is Kind.POD:
            return self._call(what, self._core.read_namespaced_pod, name, namespace)
        if kind is Kind.NODE:
            return self._call(what, self._core.read_node, name)
        if kind is Kind.CORRECTION:
            return self._call(what, self._custom.get_cluster_custom_object, *_CORRECTIONS, name)
        raise InvalidInput(f"the operator does not read single {kind.value}s")

    def watch(
        self, kind: Kind, resource_version: str, timeout_s: int = 30
    ) -> Iterator[tuple[str, JsonObject]]:
        """``(type, object)`` events after ``resource_version``, for up to ``timeout_s``.

        Raises :class:`WatchExpired` when the version is too old (relist and watch again).
        """
        fn, args = self._lister(kind, None)
        what = f"watch {kind.value}s"
        try:
            response = fn(
                *args,
                watch=True,
                resource_version=resource_version or None,
                timeout_seconds=timeout_s,
                allow_watch_bookmarks=True,
                _preload_content=False,
                _request_timeout=(10.0, timeout_s + 15.0),
            )
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise map_error(exc, what) from exc
        try:
            for line in _lines(response):
                event = json.loads(line)
                kind_of_event = str(event.get("type", ""))
                obj = event.get("object") or {}
                if kind_of_event == "ERROR":
                    code = obj.get("code")
                    message = obj.get("message", "")
                    if code == 410:
                        raise WatchExpired(f"{what}: {message}")
                    raise Unavailable(f"{what}: {code} {message}")
                yield kind_of_event, obj
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise Unavailable(f"{what}: the stream broke: {exc}") from exc
        finally:
            response.release_conn()

    # -- writes -----------------------------------------------------------------------------

    def patch(
        self, kind: Kind, name: str, body: Mapping[str, Any], namespace: str = ""
    ) -> JsonObject:
        """A JSON merge patch of ``kind`` ``namespace/name``."""
        what = f"patch {kind.value} {_path(namespace, name)}"
        options = {"_content_type": MERGE_PATCH}
        if kind is Kind.DEPLOYMENT:
            fn: Callable[..., Any] = self._apps.patch_namespaced_deployment
            return self._call(what, fn, name, namespace, dict(body), **options)
        if kind is Kind.STATEFULSET:
            fn = self._apps.patch_namespaced_stateful_set
            return self._call(what, fn, name, namespace, dict(body), **options)
        if kind is Kind.NODE:
            return self._call(what, self._core.patch_node, name, dict(body), **options)
        if kind is Kind.CORRECTION:
            fn = self._custom.patch_cluster_custom_object
            return self._call(what, fn, *_CORRECTIONS, name, dict(body), **options)
        raise InvalidInput(f"the operator does not patch {kind.value}s")

    def patch_correction_status(self, name: str, body: Mapping[str, Any]) -> JsonObject:
        """A merge patch of a Correction's status subresource."""
        return self._call(
            f"update status of Correction {name}",
            self._custom.patch_cluster_custom_object_status,
            *_CORRECTIONS,
            name,
            dict(body),
            _content_type=MERGE_PATCH,
        )

    def create_correction(self, body: Mapping[str, Any]) -> JsonObject:
        name = (body.get("metadata") or {}).get("name", "")
        return self._call(
            f"create Correction {name}",
            self._custom.create_cluster_custom_object,
            *_CORRECTIONS,
            dict(body),
        )

    def delete_pod(self, name: str, namespace: str, uid: str) -> None:
        """Delete a pod, only if it is still the one with ``uid`` (the default grace period)."""
        self._call(
            f"delete Pod {namespace}/{name}",
            self._core.delete_namespaced_pod,
            name,
            namespace,
            body={"preconditions": {"uid": uid}},
        )

    def create_event(self, namespace: str, body: Mapping[str, Any]) -> None:
        self._call(
            f"create Event in {namespace}",
            self._core.create_namespaced_event,
            namespace,
            dict(body),
        )


def _path(namespace: str, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def _lines(response: Any) -> Iterator[bytes]:
    """The newline-separated JSON documents of a watch response, as they arrive."""
    pending = b""
    for chunk in response.stream(amt=None, decode_content=True):
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.strip():
                yield line
    if pending.strip():
        yield pending
