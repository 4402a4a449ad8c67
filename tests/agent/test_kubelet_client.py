"""The PodResources client against a fake kubelet on a real unix-socket gRPC server."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest

from backstop.agent.kubelet_client import ContainerRef, PodResourcesClient
from backstop.core.errors import Unavailable
from tests.support.fake_kubelet import GPU, FakePod, ServedKubelet, fake_kubelet

__all__ = ["fake_kubelet"]  # the fixture, found by pytest in this module


def test_gpu_devices_per_container_and_the_allocatable_gpus(fake_kubelet: ServedKubelet) -> None:
    kubelet = fake_kubelet.kubelet
    kubelet.pods = [
        FakePod(
            "team-a",
            "vllm-0",
            {
                "server": [(GPU, "GPU-aaaa"), (GPU, "GPU-bbbb"), ("example.com/nic", "nic-1")],
                "sidecar": [],
            },
        ),
        FakePod("team-b", "mig-job", {"main": [("nvidia.com/mig-1g.10gb", "MIG-cccc")]}),
    ]
    kubelet.allocatable = [(GPU, "GPU-aaaa"), (GPU, "GPU-bbbb"), ("example.com/nic", "nic-1")]
    client = PodResourcesClient(fake_kubelet.socket_path)
    try:
        found = client.fetch()
    finally:
        client.close()
    assert dict(found.containers) == {
        ContainerRef("team-a", "vllm-0", "server"): frozenset({"GPU-aaaa", "GPU-bbbb"}),
        ContainerRef("team-a", "vllm-0", "sidecar"): frozenset(),
        ContainerRef("team-b", "mig-job", "main"): frozenset({"MIG-cccc"}),
    }
    assert found.allocatable == {"GPU-aaaa", "GPU-bbbb"}
    assert kubelet.calls == {"List": 1, "GetAllocatableResources": 1}


def test_a_kubelet_without_get_allocatable_still_lists(fake_kubelet: ServedKubelet) -> None:
    fake_kubelet.kubelet.allocatable_implemented = False
    fake_kubelet.kubelet.pods = [FakePod("ns", "p", {"c": [(GPU, "GPU-aaaa")]})]
    found = PodResourcesClient(fake_kubelet.socket_path).fetch()
    assert found.allocatable == frozenset()
    assert dict(found.containers) == {ContainerRef("ns", "p", "c"): frozenset({"GPU-aaaa"})}


def test_a_slow_kubelet_costs_at_most_the_budget(fake_kubelet: ServedKubelet) -> None:
    fake_kubelet.kubelet.delay_s = 2.0
    client = PodResourcesClient(fake_kubelet.socket_path, timeout_s=0.2)
    start = time.monotonic()
    with pytest.raises(Unavailable, match="DEADLINE_EXCEEDED"):
        client.fetch()
    assert time.monotonic() - start < 1.0


def test_a_refusing_kubelet_is_unavailable_and_then_recovers(fake_kubelet: ServedKubelet) -> None:
    fake_kubelet.kubelet.refuse = True
    client = PodResourcesClient(fake_kubelet.socket_path)
    with pytest.raises(Unavailable, match=r"List .*UNAVAILABLE"):
        client.fetch()
    fake_kubelet.kubelet.refuse = False
    assert client.fetch().containers == {}


def test_no_socket_is_unavailable_fast() -> None:
    with tempfile.TemporaryDirectory() as directory:
        client = PodResourcesClient(str(Path(directory) / "kubelet.sock"))
        start = time.monotonic()
        with pytest.raises(Unavailable, match="unix://"):
            client.fetch()
        assert time.monotonic() - start < 1.0
