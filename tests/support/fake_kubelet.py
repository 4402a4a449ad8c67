"""A fake kubelet: the PodResources v1 API served on a real unix-socket gRPC server.

Tests set what it answers (``pods``, ``allocatable``), make it slow (``delay_s``), refuse
(``refuse`` aborts every call with UNAVAILABLE) or answer ``GetAllocatableResources`` with
UNIMPLEMENTED as a kubelet older than 1.23 does; ``calls`` counts what it was asked.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from backstop.api.podresources.v1 import api_pb2, api_pb2_grpc

GPU = "nvidia.com/gpu"


@dataclass
class FakePod:
    namespace: str
    name: str
    containers: Mapping[str, Sequence[tuple[str, str]]] = field(default_factory=dict)
    """Container name -> its devices as (resource name, device id)."""


class FakeKubelet(api_pb2_grpc.PodResourcesListerServicer):
    def __init__(self) -> None:
        self.pods: list[FakePod] = []
        self.allocatable: list[tuple[str, str]] = []
        self.delay_s = 0.0
        self.refuse = False
        self.allocatable_implemented = True
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _enter(self, call: str, context: grpc.ServicerContext) -> None:
        with self._lock:
            self.calls[call] += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.refuse:
            context.abort(grpc.StatusCode.UNAVAILABLE, "kubelet is restarting")

    def List(
        self, request: api_pb2.ListPodResourcesRequest, context: grpc.ServicerContext
    ) -> api_pb2.ListPodResourcesResponse:
        self._enter("List", context)
        return api_pb2.ListPodResourcesResponse(
            pod_resources=[
                api_pb2.PodResources(
                    name=pod.name,
                    namespace=pod.namespace,
                    containers=[
                        api_pb2.ContainerResources(name=name, devices=_devices(devices))
                        for name, devices in pod.containers.items()
                    ],
                )
                for pod in self.pods
            ]
        )

    def GetAllocatableResources(
        self, request: api_pb2.AllocatableResourcesRequest, context: grpc.ServicerContext
    ) -> api_pb2.AllocatableResourcesResponse:
        self._enter("GetAllocatableResources", context)
        if not self.allocatable_implemented:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "unknown method")
        return api_pb2.AllocatableResourcesResponse(
            devices=_devices(self.allocatable), cpu_ids=[0, 1]
        )


def _devices(devices: Sequence[tuple[str, str]]) -> list[api_pb2.ContainerDevices]:
    by_resource: dict[str, list[str]] = {}
    for resource, device_id in devices:
        by_resource.setdefault(resource, []).append(device_id)
    return [
        api_pb2.ContainerDevices(resource_name=r, device_ids=ids) for r, ids in by_resource.items()
    ]


@dataclass
class ServedKubelet:
    kubelet: FakeKubelet
    socket_path: str


@pytest.fixture
def fake_kubelet() -> Iterator[ServedKubelet]:
    """A :class:`FakeKubelet` listening on ``kubelet.sock`` in a short temporary directory
    (a unix socket path holds at most 107 bytes)."""
    directory = Path(tempfile.mkdtemp(prefix="kubelet-"))
    socket_path = str(directory / "kubelet.sock")
    kubelet = FakeKubelet()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    api_pb2_grpc.add_PodResourcesListerServicer_to_server(kubelet, server)
    server.add_insecure_port(f"unix:{socket_path}")
    server.start()
    try:
        yield ServedKubelet(kubelet, socket_path)
    finally:
        server.stop(grace=None)
        shutil.rmtree(directory, ignore_errors=True)
