"""Pod UID and container id from /proc/PID/cgroup, per container runtime and cgroup driver."""

from __future__ import annotations

import pytest

from backstop.agent.collectors.cgroup_file import parse_cgroup_file
from backstop.agent.pod_cgroups import pod_uid_from_cgroup

UID = "6e0a1f5c-3b2d-4c8e-9f10-2a3b4c5d6e7f"
SYSTEMD_UID = UID.replace("-", "_")
CID = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

# (runtime, driver, QoS class, the 0:: line's path)
LAYOUTS = [
    (
        "containerd",
        "systemd",
        "burstable",
        f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{SYSTEMD_UID}.slice/"
        f"cri-containerd-{CID}.scope",
    ),
    (
        "containerd",
        "systemd",
        "guaranteed",
        f"/kubepods.slice/kubepods-pod{SYSTEMD_UID}.slice/cri-containerd-{CID}.scope",
    ),
    ("containerd", "cgroupfs", "besteffort", f"/kubepods/besteffort/pod{UID}/{CID}"),
    (
        "cri-o",
        "systemd",
        "besteffort",
        f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{SYSTEMD_UID}.slice/"
        f"crio-{CID}.scope",
    ),
    ("cri-o", "cgroupfs", "burstable", f"/kubepods/burstable/pod{UID}/crio-{CID}"),
    (
        "docker",
        "systemd",
        "burstable",
        f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{SYSTEMD_UID}.slice/"
        f"docker-{CID}.scope",
    ),
    ("docker", "cgroupfs", "guaranteed", f"/kubepods/pod{UID}/{CID}"),
    (
        "containerd in kind",
        "systemd",
        "burstable",
        f"/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/"
        f"kubelet-kubepods-burstable-pod{SYSTEMD_UID}.slice/cri-containerd-{CID}.scope",
    ),
]


@pytest.mark.parametrize(
    ("runtime", "driver", "qos", "path"), LAYOUTS, ids=[f"{r}-{d}-{q}" for r, d, q, _ in LAYOUTS]
)
def test_pod_uid_and_container_id_from_each_layout(
    runtime: str, driver: str, qos: str, path: str
) -> None:
    v2_path, container_id = parse_cgroup_file(f"0::{path}\n")
    assert (pod_uid_from_cgroup(v2_path), container_id) == (UID, CID)


def test_a_v1_hierarchy_names_the_pod_on_a_hybrid_host() -> None:
    text = f"12:memory:/kubepods/burstable/pod{UID}/{CID}\n0::/\n"
    v2_path, container_id = parse_cgroup_file(text)
    assert container_id == CID
    assert pod_uid_from_cgroup(f"/kubepods/burstable/pod{UID}/{CID}") == UID
    assert pod_uid_from_cgroup(v2_path) == ""  # the v2 path alone says nothing here


@pytest.mark.parametrize(
    "path",
    [
        "/user.slice/user-1000.slice/session-2.scope",
        f"/system.slice/docker-{CID}.scope",  # a container, not a pod
        f"/pod{UID}/{CID}",  # no kubepods above it
        f"/kubepods/burstable/pod{UID[:-1]}/{CID}",  # not a whole UID
        f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{SYSTEMD_UID}x.slice",
        "",
    ],
)
def test_paths_outside_a_pod_name_none(path: str) -> None:
    assert pod_uid_from_cgroup(path) == ""
