"""Pods attributed end to end: the sampler with the NVML test library, a fake /proc tree whose
processes sit in kubepods cgroups, the kubelet's container log links and a fake kubelet serving
PodResources v1 on a real unix socket."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backstop.agent import metrics
from backstop.agent.collectors.nvml import NvmlBackend
from backstop.agent.collectors.processes import ProcessCollector
from backstop.agent.discovery import WorkloadDiscovery
from backstop.agent.kubelet_client import PodResourcesClient
from backstop.agent.pod_attribution import (
    LABEL_CONTAINER,
    LABEL_GPU_ALLOCATION,
    LABEL_NAMESPACE,
    LABEL_POD,
    LABEL_POD_UID,
    PodAttribution,
)
from backstop.agent.sampler import NodeSample, Sampler
from backstop.core.models import Fingerprint, Workload
from backstop.core.scope import workload_namespace
from tests.agent.collectors.test_processes import BOOT, HZ, fake_process
from tests.agent.conftest import FakeClock
from tests.support.fake_kubelet import GPU, FakePod, ServedKubelet, fake_kubelet
from tests.support.fake_nvml import FakeNvml, FakeProcess, default_gpus, fake_nvml

__all__ = ["fake_kubelet", "fake_nvml"]  # fixtures, found by pytest in this module

SERVER_UID = "6e0a1f5c-3b2d-4c8e-9f10-2a3b4c5d6e7f"
NOTEBOOK_UID = "0b9c8d7e-6f5a-4b3c-8d2e-1f0a9b8c7d6e"
SERVER_CID = "a1" * 32
NOTEBOOK_CID = "b2" * 32
SERVER_PID, NOTEBOOK_PID, HOST_PID = 4242, 4343, 4444
GPUS = default_gpus(2)


def _systemd_cgroup(uid: str, cid: str) -> str:
    slice_uid = uid.replace("-", "_")
    return (
        f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{slice_uid}.slice/"
        f"cri-containerd-{cid}.scope\n"
    )


@pytest.fixture
def node(tmp_path: Path, fake_nvml: FakeNvml) -> Path:
    """A node: a served model in team-a (GPU 0 allocated), a notebook in team-b that asked
    for no GPU yet holds a context on both, and a host process on GPU 1; their log links."""
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "stat").write_text(f"cpu  1 2 3 4\nbtime {BOOT}\n")
    fake_process(proc, 1, ppid=0, comm="init", cgroup="0::/init.scope\n")
    started = (int(time.time()) - BOOT - 60) * HZ  # a minute old: no longer young
    fake_process(
        proc, SERVER_PID, comm="vllm", start_ticks=started,
        cgroup=_systemd_cgroup(SERVER_UID, SERVER_CID),
    )  # fmt: skip
    fake_process(
        proc, NOTEBOOK_PID, comm="python3", start_ticks=started,
        cgroup=f"0::/kubepods/besteffort/pod{NOTEBOOK_UID}/{NOTEBOOK_CID}\n",
    )  # fmt: skip
    fake_process(proc, HOST_PID, comm="bench", start_ticks=started)
    links = tmp_path / "containers"
    links.mkdir()
    for name in (
        f"vllm-0_team-a_server-{SERVER_CID}.log",
        f"notebook-7f9c_team-b_jupyter-{NOTEBOOK_CID}.log",
        "not-a-link.txt",
    ):
        (links / name).symlink_to("/var/log/pods/elsewhere/0.log")
    fake_nvml.write(
        GPUS,
        [
            FakeProcess(0, SERVER_PID, 30 << 30),
            FakeProcess(0, NOTEBOOK_PID, 2 << 30),
            FakeProcess(1, NOTEBOOK_PID, 2 << 30),
            FakeProcess(1, HOST_PID, 1 << 30),
        ],
    )
    return tmp_path


def _kubelet_knows_the_pods(served: ServedKubelet) -> None:
    served.kubelet.pods = [
        FakePod("team-a", "vllm-0", {"server": [(GPU, GPUS[0].uuid)]}),
        FakePod("team-b", "notebook-7f9c", {"jupyter": []}),
    ]
    served.kubelet.allocatable = [(GPU, g.uuid) for g in GPUS]


def _sampler(node: Path, pods: PodAttribution) -> Iterator[Sampler]:
    nvml = NvmlBackend()
    assert nvml.start()
    proc = node / "proc"
    try:
        yield Sampler(nvml, ProcessCollector(proc), WorkloadDiscovery("n1", proc), pods=pods)
    finally:
        pods.close()
        nvml.close()


def _by_pid(sample: NodeSample) -> dict[int, Workload]:
    return {w.root_pid: w for w in sample.workloads}


def test_pods_are_named_and_a_container_without_the_gpu_is_unallocated(
    node: Path, fake_kubelet: ServedKubelet
) -> None:
    _kubelet_knows_the_pods(fake_kubelet)
    pods = PodAttribution(PodResourcesClient(fake_kubelet.socket_path), node / "containers")
    for sampler in _sampler(node, pods):
        sample = sampler.sample()
    assert not sample.errors
    workloads = _by_pid(sample)
    server, notebook, host = workloads[SERVER_PID], workloads[NOTEBOOK_PID], workloads[HOST_PID]
    assert (
        server.labels.items()
        >= {
            LABEL_NAMESPACE: "team-a",
            LABEL_POD: "vllm-0",
            LABEL_CONTAINER: "server",
            LABEL_POD_UID: SERVER_UID,
            LABEL_GPU_ALLOCATION: "allocated",
        }.items()
    )
    assert workload_namespace(server) == "team-a"
    assert notebook.labels[LABEL_POD] == "notebook-7f9c"
    assert notebook.labels[LABEL_POD_UID] == NOTEBOOK_UID
    assert notebook.labels[LABEL_GPU_ALLOCATION] == "unallocated"
    assert {g.gpu_uuid for g in notebook.fingerprint.gpus} == {g.uuid for g in GPUS}
    assert not {LABEL_POD, LABEL_POD_UID, LABEL_GPU_ALLOCATION} & host.labels.keys()


def test_the_kubelet_is_asked_again_at_the_interval_or_for_a_new_container(
    node: Path, fake_kubelet: ServedKubelet
) -> None:
    _kubelet_knows_the_pods(fake_kubelet)
    clock = FakeClock()
    pods = PodAttribution(
        PodResourcesClient(fake_kubelet.socket_path), node / "containers", clock=clock
    )
    calls = fake_kubelet.kubelet.calls
    for sampler in _sampler(node, pods):
        sampler.sample()
        clock.now += 5
        sampler.sample()
        assert calls["List"] == 1  # cached
        third_cid = "c3" * 32
        fake_process(
            node / "proc", 4545, comm="trainer",
            cgroup=_systemd_cgroup("11111111-2222-4333-8444-555555555555", third_cid),
        )  # fmt: skip
        (node / "containers" / f"train-0_team-c_main-{third_cid}.log").touch()
        fake_kubelet.kubelet.pods.append(FakePod("team-c", "train-0", {"main": []}))
        listed = [FakeProcess(0, SERVER_PID, 30 << 30), FakeProcess(1, 4545, 1 << 30)]
        FakeNvml(node / "nvml").write(GPUS, listed)
        sample = sampler.sample()
        assert calls["List"] == 2  # a new GPU container: asked at once
        assert _by_pid(sample)[4545].labels[LABEL_GPU_ALLOCATION] == "unallocated"
        clock.now += 1
        sampler.sample()
        assert calls["List"] == 2
        clock.now += 10
        sampler.sample()
        assert calls["List"] == 3


@pytest.mark.parametrize("failure", ["absent", "refusing", "slow"])
def test_a_failing_kubelet_costs_the_judgement_never_the_sample(
    node: Path, fake_kubelet: ServedKubelet, failure: str
) -> None:
    _kubelet_knows_the_pods(fake_kubelet)
    socket_path = fake_kubelet.socket_path
    if failure == "absent":
        socket_path = str(node / "no-such" / "kubelet.sock")
    fake_kubelet.kubelet.refuse = failure == "refusing"
    fake_kubelet.kubelet.delay_s = 3.0 if failure == "slow" else 0.0
    pods = PodAttribution(PodResourcesClient(socket_path, timeout_s=0.2), node / "containers")
    for sampler in _sampler(node, pods):
        start = time.monotonic()
        sample = sampler.sample()
        elapsed = time.monotonic() - start
    assert elapsed < 1.5
    assert metrics.COLLECTOR_SECONDS.labels(collector="kubelet").value < 0.6
    assert any("kubelet List" in e for e in sample.errors)
    assert metrics.COLLECTOR_SUCCESS.labels(collector="kubelet").value == 0
    workloads = _by_pid(sample)
    assert set(workloads) == {SERVER_PID, NOTEBOOK_PID, HOST_PID}
    server = workloads[SERVER_PID]
    assert server.labels[LABEL_POD] == "vllm-0"  # the links still name it
    assert LABEL_GPU_ALLOCATION not in server.labels
    assert LABEL_GPU_ALLOCATION not in workloads[NOTEBOOK_PID].labels


def test_without_the_links_a_pod_is_known_by_its_uid_only(
    node: Path, fake_kubelet: ServedKubelet
) -> None:
    _kubelet_knows_the_pods(fake_kubelet)
    pods = PodAttribution(PodResourcesClient(fake_kubelet.socket_path), None)
    for sampler in _sampler(node, pods):
        sample = sampler.sample()
    server = _by_pid(sample)[SERVER_PID]
    assert server.labels[LABEL_POD_UID] == SERVER_UID
    assert not {LABEL_POD, LABEL_NAMESPACE, LABEL_GPU_ALLOCATION} & server.labels.keys()


def test_a_node_without_pods_never_asks(tmp_path: Path, fake_kubelet: ServedKubelet) -> None:
    host = Workload("wl-1", "n1", 10, (10,), Fingerprint(cgroup="/user.slice/a.scope"))
    pods = PodAttribution(PodResourcesClient(fake_kubelet.socket_path), tmp_path / "none")
    pods.refresh([host])  # the links directory is absent too: nothing is read, nothing fails
    assert pods.label([host]) == [host]
    assert fake_kubelet.kubelet.calls == {}
    pods.close()


@pytest.mark.parametrize(
    ("devices", "judged"),
    [
        ([(GPU, "0")], "allocated"),  # the device plugin's index strategy
        ([(GPU, "1")], "unallocated"),
        ([("nvidia.com/mig-1g.10gb", "MIG-6f2b9f2e-0000-5a4d-9c3e-111111111111")], None),
    ],
    ids=["index-held", "index-other", "mig"],
)
def test_gpu_indices_are_understood_and_mig_slices_are_not_judged(
    node: Path, fake_kubelet: ServedKubelet, devices: list[tuple[str, str]], judged: str | None
) -> None:
    fake_kubelet.kubelet.pods = [FakePod("team-a", "vllm-0", {"server": devices})]
    pods = PodAttribution(PodResourcesClient(fake_kubelet.socket_path), node / "containers")
    for sampler in _sampler(node, pods):
        sample = sampler.sample()
    assert _by_pid(sample)[SERVER_PID].labels.get(LABEL_GPU_ALLOCATION) == judged


def test_nothing_is_judged_when_the_plugin_names_gpus_unlike_nvml(
    node: Path, fake_kubelet: ServedKubelet
) -> None:
    _kubelet_knows_the_pods(fake_kubelet)
    fake_kubelet.kubelet.pods[0] = FakePod("team-a", "vllm-0", {"server": [(GPU, "gpu-a")]})
    fake_kubelet.kubelet.allocatable = [(GPU, "gpu-a"), (GPU, "gpu-b")]
    pods = PodAttribution(PodResourcesClient(fake_kubelet.socket_path), node / "containers")
    for sampler in _sampler(node, pods):
        sample = sampler.sample()
    workloads = _by_pid(sample)
    assert LABEL_GPU_ALLOCATION not in workloads[SERVER_PID].labels
    assert LABEL_GPU_ALLOCATION not in workloads[NOTEBOOK_PID].labels
    assert workloads[SERVER_PID].labels[LABEL_POD] == "vllm-0"
