"""The agent DaemonSet: on GPU nodes only (fenced ones included), in the host's PID namespace,
with the host paths and exactly the documented capabilities; arguments the real ``backstop
agent run`` takes; and an init container that enrols each node once, for real, against a
controller with an enrolment port."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from backstop.cli.main import build_parser
from backstop.security.peers import peer_identity
from tests.helm.conftest import CI_VALUES, render
from tests.helm.conftest import only as only_object
from tests.support.cluster import LocalCluster
from tests.support.kube import ControlPlane, node_is_ready, wait_until
from tests.support.secure import SecureSetup

DOCUMENTED_CAPABILITIES = ["KILL", "SYS_PTRACE", "DAC_READ_SEARCH", "SYS_ADMIN", "NET_ADMIN"]
AGENT_TEMPLATES = ("agent/serviceaccount", "agent/daemonset", "agent/service", "trust-policy")


def _pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return only_object(objects, "DaemonSet")["spec"]["template"]["spec"]


def _agent(objects: list[dict[str, Any]]) -> dict[str, Any]:
    [container] = _pod(objects)["containers"]
    return container


def test_agent_runs_in_the_host_pid_namespace_on_gpu_nodes(kube: ControlPlane) -> None:
    pod = _pod(render(kube))
    assert pod["hostPID"] is True
    assert "hostNetwork" not in pod
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux", "nvidia.com/gpu.present": "true"}
    assert {"key": "backstop.io/shutdown", "operator": "Exists"} in pod["tolerations"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["priorityClassName"] == "system-node-critical"


def test_agent_mounts_cgroups_read_write_pod_resources_read_only_and_keeps_state_on_the_host(
    kube: ControlPlane,
) -> None:
    objects = render(kube)
    volumes = {v["name"]: v for v in _pod(objects)["volumes"]}
    mounts = {m["name"]: m for m in _agent(objects)["volumeMounts"]}
    assert volumes["cgroup"]["hostPath"] == {"path": "/sys/fs/cgroup", "type": "Directory"}
    assert mounts["cgroup"] == {"name": "cgroup", "mountPath": "/host/sys/fs/cgroup"}
    assert volumes["pod-resources"]["hostPath"]["path"] == "/var/lib/kubelet/pod-resources"
    assert mounts["pod-resources"]["readOnly"] is True
    assert volumes["container-logs"]["hostPath"] == {
        "path": "/var/log/containers",
        "type": "Directory",
    }
    assert mounts["container-logs"] == {
        "name": "container-logs",
        "mountPath": "/var/log/containers",
        "readOnly": True,
    }
    assert volumes["state"]["hostPath"] == {
        "path": "/var/lib/backstop",
        "type": "DirectoryOrCreate",
    }
    assert mounts["state"]["mountPath"] == "/var/lib/backstop"
    assert not mounts["state"].get("readOnly")
    # hostPID shows the node's processes in the container's own /proc: no host /proc mount.
    assert not [v for v in volumes.values() if v.get("hostPath", {}).get("path") == "/proc"]


def test_agent_adds_only_the_documented_capabilities_and_is_not_privileged(
    kube: ControlPlane,
) -> None:
    security = _agent(render(kube))["securityContext"]
    assert security["privileged"] is False
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"], "add": DOCUMENTED_CAPABILITIES}
    assert security["appArmorProfile"] == {"type": "Unconfined"}
    values = (Path(__file__).parents[2] / "helm" / "backstop" / "values.yaml").read_text()
    for capability in DOCUMENTED_CAPABILITIES:  # each one explained where it is set
        line = values.index(f"    - {capability}\n")
        assert values[values.rindex("\n", 0, line - 1) :].lstrip().startswith("#")


def test_privileged_escape_hatch_drops_the_capability_list(kube: ControlPlane) -> None:
    objects = render(kube, values=CI_VALUES / "privileged-agent-values.yaml")
    security = _agent(objects)["securityContext"]
    assert security["privileged"] is True
    assert "capabilities" not in security
    assert "allowPrivilegeEscalation" not in security
    pod = _pod(objects)
    assert pod["runtimeClassName"] == "nvidia"
    assert "initContainers" not in pod  # nodes enrolled out of band
    assert _agent(objects)["command"] == ["backstop"]


def _parse(args: list[str], node: str) -> Any:
    return build_parser().parse_args([a.replace("$(NODE_NAME)", node) for a in args])


def test_agent_arguments_are_ones_backstop_agent_run_takes(kube: ControlPlane) -> None:
    objects = render(kube, release="bs", namespace="gpu")
    agent = _agent(objects)
    assert agent["command"] == ["nsenter", "--cgroup=/proc/1/ns/cgroup", "--", "backstop"]
    env = {e["name"]: e for e in agent["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    args = _parse(agent["args"], "gpu-node-0")
    assert (args.command, args.controller) == ("agent", "bs-backstop-controller.gpu.svc:7443")
    assert args.node_id == "gpu-node-0"
    assert args.state_dir == "/var/lib/backstop"
    assert args.trust_policy == "/etc/backstop/trust/trust.json"
    assert args.cgroup_prefix == ["/kubepods", "/kubepods.slice"]
    assert args.metrics_listen == "0.0.0.0:9465"
    assert args.lease == 0
    assert not args.agent_tls_dir  # STATE_DIR/tls, where enrolment writes
    assert args.pod_resources_socket == "/var/lib/kubelet/pod-resources/kubelet.sock"
    assert args.container_logs_dir == "/var/log/containers"

    privileged = _agent(render(kube, values=CI_VALUES / "privileged-agent-values.yaml"))
    args = _parse(privileged["args"], "gpu-node-1")
    assert (args.lease, args.lease_selector) == (30.0, "backstop.io/lease=fail-closed")
    assert sorted(args.label) == ["pool=inference", "zone=eu-west-1a"]
    assert args.nvml_library == "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"
    assert (args.pod_resources_socket, args.container_logs_dir) == ("", "")
    assert "container-logs" not in {m["name"] for m in privileged["volumeMounts"]}


@pytest.fixture
def extra_nodes(kube: ControlPlane) -> Iterator[dict[str, str]]:
    """A node without GPUs and a GPU node fenced by a Backstop shutdown; deleted afterwards."""
    suffix = uuid.uuid4().hex[:6]
    names = {"cpu": f"cpu-{suffix}", "fenced": f"fenced-gpu-{suffix}"}
    core = k8s.CoreV1Api(kube.api_client())
    try:
        kube.add_gpu_node(names["cpu"], gpus=0, labels={"nvidia.com/gpu.present": "false"})
        kube.add_gpu_node(names["fenced"])
        core.patch_node(
            names["fenced"],
            {
                "spec": {
                    "unschedulable": True,
                    "taints": [
                        {"key": "backstop.io/shutdown", "value": "cor-1", "effect": "NoSchedule"}
                    ],
                }
            },
        )
        yield names
    finally:
        for name in names.values():
            try:
                core.delete_node(name)
            except k8s.ApiException as exc:
                if exc.status != 404:
                    raise


def test_agent_pods_run_on_every_gpu_node_fenced_ones_included_and_nowhere_else(
    kube: ControlPlane, namespace: str, extra_nodes: dict[str, str]
) -> None:
    flags = [f"--show-only=templates/{t}.yaml" for t in AGENT_TEMPLATES]
    objects = render(kube, *flags, release="backstop", namespace=namespace)
    kube.kubectl("apply", "-n", namespace, "-f", "-", input_text=yaml.safe_dump_all(objects))
    core = k8s.CoreV1Api(kube.api_client())
    gpu_nodes = {
        n.metadata.name
        for n in core.list_node(label_selector="nvidia.com/gpu.present=true").items
        if node_is_ready(n)
    }
    assert extra_nodes["fenced"] in gpu_nodes
    assert extra_nodes["cpu"] not in gpu_nodes

    def placed() -> dict[str, k8s.V1Pod] | None:
        pods = core.list_namespaced_pod(
            namespace, label_selector="app.kubernetes.io/component=agent"
        ).items
        running = {p.spec.node_name: p for p in pods if p.status.phase == "Running"}
        return running if set(running) >= gpu_nodes else None

    pods = wait_until(placed, "an agent pod running on every GPU node", timeout_s=60)
    assert set(pods) == gpu_nodes  # none on the node without GPUs
    for pod in pods.values():
        assert pod.spec.host_pid is True
        assert pod.spec.containers[0].security_context.capabilities.add == DOCUMENTED_CAPABILITIES
    daemonset = k8s.AppsV1Api(kube.api_client()).read_namespaced_daemon_set(
        "backstop-agent", namespace
    )
    assert daemonset.status.desired_number_scheduled == len(gpu_nodes)


def _enrol_script(kube: ControlPlane) -> tuple[list[str], dict[str, str]]:
    [init] = _pod(render(kube))["initContainers"]
    env = {e["name"]: e.get("value", "") for e in init["env"]}
    return [*init["command"], *init["args"]], env


def test_init_container_enrols_the_node_once_with_its_token(
    kube: ControlPlane, tmp_path: Path
) -> None:
    command, rendered_env = _enrol_script(kube)
    assert command[:2] == ["sh", "-c"]
    assert rendered_env["ENROL_ADDRESS"] == "backstop-controller.backstop.svc:7444"
    assert rendered_env["TOKEN_SECRET"] == "backstop-enrolment-tokens"

    setup = SecureSetup(tmp_path / "pki", quorum={}).create({"admin": "admin"})
    cluster = LocalCluster(tmp_path, insecure=False)
    try:
        cluster.start_controller("127.0.0.1:0", *setup.controller_args())
        node = "gpu-node-7"
        tokens, state = tmp_path / "tokens", tmp_path / "state"
        tokens.mkdir()
        env = {
            **os.environ,
            **rendered_env,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "NODE_NAME": node,
            "STATE_DIR": str(state),
            "TOKEN_DIR": str(tokens),
            "CA_FILE": str(setup.ca_dir / "ca.crt"),
            "ENROL_ADDRESS": cluster.enrol_address,
        }

        def run() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=60, check=False
            )

        missing = run()
        assert missing.returncode == 1
        assert (
            f"node {node} is not enrolled and Secret backstop-enrolment-tokens has no key {node}"
            in missing.stderr
        )
        assert f"backstop pki token --node {node}" in missing.stderr

        token = cluster.cli("pki", "token", "--node", node, env=setup.people["admin"].env())
        assert token.code == 0, token.err
        (tokens / node).write_text(token.out.split()[0])
        enrolled = run()
        assert enrolled.returncode == 0, enrolled.stderr
        identity = peer_identity((state / "tls" / "node.crt").read_bytes())
        assert (identity.name, identity.role) == (node, "agent")
        assert (state / "tls" / "node.key").stat().st_mode & 0o077 == 0

        # A restart finds the certificate and does not spend another token (this one is used).
        again = run()
        assert again.returncode == 0, again.stderr
        assert f"node {node} is enrolled" in again.stdout
        assert peer_identity((state / "tls" / "node.crt").read_bytes()).serial == identity.serial
    finally:
        cluster.stop()
