"""The test control plane is a real cluster: a healthy API server at the pinned release, RBAC
enforced, kwok GPU nodes Ready, GPU pods placed by the real scheduler through the controller
manager's ReplicaSets and run by kwok, kubectl and helm wired to it, and nothing left behind."""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from tests.support.kube import (
    DEFAULT_GPU_PRODUCT,
    GPU_RESOURCE,
    Component,
    ControlPlane,
    ControlPlaneError,
    build_binaries,
    node_is_ready,
    pinned_versions,
    wait_until,
)

SESSION_NODES = ("gpu-node-0", "gpu-node-1")


def gpu_pod_spec(gpus: int, node_selector: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "containers": [
            {
                "name": "server",
                "image": "registry.invalid/model-server:1",
                "resources": {"limits": {GPU_RESOURCE: str(gpus)}},
            }
        ],
        "nodeSelector": node_selector or {},
    }


def pod_is_running(pod: k8s.V1Pod) -> bool:
    statuses = pod.status.container_statuses or []
    return (
        pod.status.phase == "Running"
        and bool(statuses)
        and all(s.state.running is not None for s in statuses)
    )


def running_pod(core: k8s.CoreV1Api, name: str, namespace: str) -> k8s.V1Pod | None:
    pod = core.read_namespaced_pod(name, namespace)
    return pod if pod_is_running(pod) else None


def pod_condition(pod: k8s.V1Pod, kind: str) -> k8s.V1PodCondition | None:
    return next((c for c in pod.status.conditions or [] if c.type == kind), None)


def test_api_server_is_ready_and_serves_the_pinned_release(kube: ControlPlane) -> None:
    readyz = kube.kubectl("get", "--raw", "/readyz?verbose").stdout
    assert "[+]etcd ok" in readyz
    assert readyz.rstrip().endswith("readyz check passed")

    version = k8s.VersionApi(kube.api_client()).get_code()
    assert version.git_version == pinned_versions()["KUBERNETES_VERSION"]


def test_rbac_forbids_an_unprivileged_service_account_to_list_secrets(
    kube: ControlPlane, namespace: str
) -> None:
    admin = kube.api_client()
    core = k8s.CoreV1Api(admin)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
    token = core.create_namespaced_service_account_token(
        "reader", namespace, {"spec": {"expirationSeconds": 600}}
    ).status.token
    as_reader = kube.token_client(token)

    # The token is signed with the plane's key and accepted: the request is authenticated ...
    review = k8s.AuthenticationV1Api(as_reader).create_self_subject_review({})
    assert review.status.user_info.username == f"system:serviceaccount:{namespace}:reader"
    # ... and then refused by RBAC.
    with pytest.raises(ApiException) as denied:
        k8s.CoreV1Api(as_reader).list_namespaced_secret(namespace)
    assert denied.value.status == 403

    rbac = k8s.RbacAuthorizationV1Api(admin)
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "secret-reader"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "reader-reads-secrets"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "secret-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    )
    # Granted in its namespace by the binding, still refused everywhere else.
    wait_until(
        lambda: k8s.CoreV1Api(as_reader).list_namespaced_secret(namespace) is not None,
        "the role binding to take effect",
        timeout_s=20,
    )
    with pytest.raises(ApiException) as elsewhere:
        k8s.CoreV1Api(as_reader).list_namespaced_secret("default")
    assert elsewhere.value.status == 403


def test_kwok_gpu_nodes_are_ready_with_eight_gpus(kube: ControlPlane) -> None:
    core = k8s.CoreV1Api(kube.api_client())
    nodes = {n.metadata.name: n for n in core.list_node(label_selector="type=kwok").items}
    assert set(SESSION_NODES) <= set(nodes)
    leases = k8s.CoordinationV1Api(kube.api_client())
    for name in SESSION_NODES:
        node = nodes[name]
        assert node_is_ready(node), node.status.conditions
        assert node.status.allocatable[GPU_RESOURCE] == "8"
        assert node.status.capacity[GPU_RESOURCE] == "8"
        assert node.metadata.labels["nvidia.com/gpu.product"] == DEFAULT_GPU_PRODUCT
        assert node.metadata.labels["nvidia.com/gpu.count"] == "8"
        assert node.status.node_info.kubelet_version.startswith("kwok-")
        # kwok heartbeats through a node lease (held by the kwok process), as a kubelet does.
        lease = leases.read_namespaced_lease(name, "kube-node-lease")
        assert lease.spec.lease_duration_seconds == 40
        assert lease.spec.renew_time is not None


def test_gpu_deployment_is_scheduled_onto_kwok_nodes_and_runs(
    kube: ControlPlane, namespace: str
) -> None:
    api = kube.api_client()
    apps, core = k8s.AppsV1Api(api), k8s.CoreV1Api(api)
    labels = {"app": "infer"}
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "infer"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": gpu_pod_spec(gpus=1)},
            },
        },
    )
    deployment = apps.read_namespaced_deployment("infer", namespace)

    # kube-controller-manager: the deployment controller makes a ReplicaSet ...
    replica_set = wait_until(
        lambda: next(
            (
                rs
                for rs in apps.list_namespaced_replica_set(namespace).items
                if any(o.uid == deployment.metadata.uid for o in rs.metadata.owner_references or [])
            ),
            None,
        ),
        "the deployment's ReplicaSet",
    )

    # ... whose pods the scheduler binds to kwok GPU nodes and kwok runs.
    def running_pods() -> list[k8s.V1Pod] | None:
        pods = core.list_namespaced_pod(namespace, label_selector="app=infer").items
        running = [p for p in pods if pod_is_running(p)]
        return running if len(running) == 2 else None

    pods = wait_until(running_pods, "two running pods", timeout_s=90)
    for pod in pods:
        assert [o.uid for o in pod.metadata.owner_references] == [replica_set.metadata.uid]
        assert pod.spec.node_name in SESSION_NODES
        assert pod.spec.scheduler_name == "default-scheduler"
        assert pod_condition(pod, "PodScheduled").status == "True"
        assert pod.status.pod_ip
        events = core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={pod.metadata.name}"
        ).items
        scheduled = [e for e in events if e.reason == "Scheduled"]
        assert scheduled
        assert scheduled[0].reporting_component == "default-scheduler"

    wait_until(
        lambda: apps.read_namespaced_deployment("infer", namespace).status.available_replicas == 2,
        "the deployment to report two available replicas",
    )


def test_scheduler_refuses_a_pod_asking_for_more_gpus_than_a_node_has(
    kube: ControlPlane, namespace: str
) -> None:
    core = k8s.CoreV1Api(kube.api_client())
    core.create_namespaced_pod(namespace, {"metadata": {"name": "greedy"}, "spec": gpu_pod_spec(9)})

    def unschedulable() -> k8s.V1PodCondition | None:
        pod = core.read_namespaced_pod("greedy", namespace)
        condition = pod_condition(pod, "PodScheduled")
        return condition if condition and condition.reason == "Unschedulable" else None

    condition = wait_until(unschedulable, "the scheduler to give up on the pod")
    assert f"Insufficient {GPU_RESOURCE}" in condition.message
    pod = core.read_namespaced_pod("greedy", namespace)
    assert pod.spec.node_name is None
    assert pod.status.phase == "Pending"


def test_added_gpu_node_runs_the_pods_that_select_its_product(
    kube: ControlPlane, namespace: str
) -> None:
    name = f"a100-{uuid.uuid4().hex[:6]}"
    core = k8s.CoreV1Api(kube.api_client())
    product = "NVIDIA-A100-SXM4-40GB"
    node = kube.add_gpu_node(name, gpus=4, product=product, gpu_memory_mib=40960)
    try:
        assert node_is_ready(node)
        assert node.status.allocatable[GPU_RESOURCE] == "4"
        core.create_namespaced_pod(
            namespace,
            {
                "metadata": {"name": "on-a100"},
                "spec": gpu_pod_spec(4, node_selector={"nvidia.com/gpu.product": product}),
            },
        )
        pod = wait_until(
            lambda: running_pod(core, "on-a100", namespace), "the pod to run on the A100 node"
        )
        assert pod.spec.node_name == name
    finally:
        core.delete_node(name)


def test_kubectl_and_helm_work_against_the_plane(
    kube: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    nodes = json.loads(kube.kubectl("get", "nodes", "-l", "type=kwok", "-o", "json").stdout)
    assert set(SESSION_NODES) <= {n["metadata"]["name"] for n in nodes["items"]}

    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("greeting: hello\n")
    (chart / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-probe\n"
        "data:\n  greeting: {{ .Values.greeting | quote }}\n"
    )
    kube.helm("lint", str(chart))
    rendered = kube.helm("template", "demo", str(chart), "--namespace", namespace).stdout
    dry_run = kube.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input_text=rendered
    )
    assert "configmap/demo-probe created (server dry run)" in dry_run.stdout
    core = k8s.CoreV1Api(kube.api_client())
    assert (
        core.list_namespaced_config_map(namespace, field_selector="metadata.name=demo-probe").items
        == []
    )

    kube.helm("install", "demo", str(chart), "--namespace", namespace, "--set", "greeting=hi")
    assert core.read_namespaced_config_map("demo-probe", namespace).data == {"greeting": "hi"}


def _refuses_connections(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_stop_leaves_no_process_behind(tmp_path: Path) -> None:
    plane = ControlPlane(tmp_path, build_binaries())
    try:
        plane.start()
        pids = [proc.pid for proc in plane.processes.values()]
        assert sorted(plane.processes) == sorted(
            ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"]
        )
        assert all(Path(f"/proc/{pid}").exists() for pid in pids)
        assert not _refuses_connections(plane.apiserver_port)
    finally:
        plane.stop()
    assert plane.leftover_processes() == []
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
    assert all(p.returncode is not None for p in plane.processes.values())
    assert _refuses_connections(plane.apiserver_port)
    assert _refuses_connections(plane.etcd_port)


class _BrokenApiServer(ControlPlane):
    def _components(self) -> dict[str, Component]:
        components = super()._components()
        apiserver = components["kube-apiserver"]
        components["kube-apiserver"] = Component(
            apiserver.name, [*apiserver.argv, "--no-such-flag"], apiserver.health_url
        )
        return components


def test_a_failed_start_stops_what_it_started(tmp_path: Path) -> None:
    plane = _BrokenApiServer(tmp_path, build_binaries())
    with pytest.raises(ControlPlaneError, match="kube-apiserver did not become healthy") as failed:
        plane.start()
    assert "no-such-flag" in str(failed.value)  # the log tail explains why
    assert plane.processes["etcd"].returncode is not None
    assert plane.leftover_processes() == []
    assert _refuses_connections(plane.etcd_port)
