"""The kubelet's PodResources v1 API, asked over its unix socket: which container holds which GPU.

``List`` names every pod on the node and, per container, the devices the device plugins
allocated to it; ``GetAllocatableResources`` names the devices the kubelet can hand out at all
(an older kubelet without it answers ``UNIMPLEMENTED``: then that part is empty). Only GPU
resources are kept (``nvidia.com/gpu`` and MIG slices ``nvidia.com/mig-*``); their device ids
are what the NVIDIA device plugin reports: GPU UUIDs, MIG UUIDs, or GPU indices under its
``index`` strategy. This module is the only one that speaks the kubelet's protocol; it returns
frozen dataclasses, and every gRPC failure becomes :class:`~backstop.core.errors.Unavailable`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import grpc

from backstop.api.podresources.v1 import api_pb2, api_pb2_grpc
from backstop.core.errors import Unavailable

DEFAULT_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"
GPU_RESOURCE = "nvidia.com/gpu"
MIG_RESOURCE_PREFIX = "nvidia.com/mig-"
MAX_MESSAGE_BYTES = 16 << 20
"""A node with hundreds of pods answers ``List`` in well under a megabyte."""


def is_gpu_resource(name: str) -> bool:
    return name == GPU_RESOURCE or name.startswith(MIG_RESOURCE_PREFIX)


@dataclass(frozen=True, slots=True, order=True)
class ContainerRef:
    """One container of one pod, as the kubelet names it."""

    namespace: str
    pod: str
    container: str


@dataclass(frozen=True, slots=True)
class PodResources:
    """What the kubelet said: GPU devices per container, and the GPUs it can hand out."""

    containers: Mapping[ContainerRef, frozenset[str]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    """Every container the kubelet runs, with the GPU device ids allocated to it (often none)."""
    allocatable: frozenset[str] = frozenset()
    """GPU device ids the node's device plugins offer."""


class PodResourcesClient:
    """Asks one kubelet; each :meth:`fetch` is bounded by ``timeout_s`` in all."""

    def __init__(self, socket_path: str = DEFAULT_SOCKET, *, timeout_s: float = 0.2) -> None:
        self._target = f"unix://{socket_path}"
        self._timeout_s = timeout_s
        self._channel: grpc.Channel | None = None

    def fetch(self) -> PodResources:
        """Both calls, within the time budget; raises :class:`Unavailable` on any failure."""
        deadline = time.monotonic() + self._timeout_s
        stub = api_pb2_grpc.PodResourcesListerStub(self._connect())
        try:
            listed = stub.List(api_pb2.ListPodResourcesRequest(), timeout=self._timeout_s)
        except grpc.RpcError as exc:
            raise self._unavailable("List", exc) from exc
        allocatable: frozenset[str] = frozenset()
        try:
            answer = stub.GetAllocatableResources(
                api_pb2.AllocatableResourcesRequest(),
                timeout=max(deadline - time.monotonic(), 0.001),
            )
            allocatable = frozenset(_gpu_ids(answer.devices))
        except grpc.RpcError as exc:
            if _code(exc) != grpc.StatusCode.UNIMPLEMENTED:
                raise self._unavailable("GetAllocatableResources", exc) from exc
        containers = {
            ContainerRef(pod.namespace, pod.name, c.name): frozenset(_gpu_ids(c.devices))
            for pod in listed.pod_resources
            for c in pod.containers
        }
        return PodResources(MappingProxyType(containers), allocatable)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def _connect(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = grpc.insecure_channel(
                self._target,
                options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)],
            )
        return self._channel

    def _unavailable(self, call: str, exc: grpc.RpcError) -> Unavailable:
        code = _code(exc)
        if code == grpc.StatusCode.UNAVAILABLE:
            # a fresh channel next time: the kubelet may have restarted and made a new socket
            self.close()
        name = code.name if code is not None else type(exc).__name__
        return Unavailable(f"kubelet {call} at {self._target}: {name}")


def _code(exc: grpc.RpcError) -> grpc.StatusCode | None:
    code = getattr(exc, "code", None)
    return code() if callable(code) else None


def _gpu_ids(devices: Iterable[api_pb2.ContainerDevices]) -> list[str]:
    found: list[str] = []
    for device in devices:
        if is_gpu_resource(device.resource_name):
            found.extend(device.device_ids)
    return found
