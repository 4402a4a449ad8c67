"""The chart as a whole: it lints clean, every object it renders is accepted by a real API
server, contradictory values stop the install with the fix in the message, the controller and
operator pods meet the restricted Pod Security Standard, the PostgreSQL store takes its URL from
a Secret, and the monitoring objects match what the daemons export."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from backstop.cli.main import build_parser
from tests.helm.conftest import CHART, CI_VALUES, exported_metrics, exported_series, render
from tests.helm.conftest import only as only_object
from tests.support.kube import ControlPlane

VALUES_SETS: dict[str, Path | None] = {
    "default": None,
    **{p.name.removesuffix("-values.yaml"): p for p in sorted(CI_VALUES.glob("*-values.yaml"))},
}
SERVICE_MONITOR_API = "monitoring.coreos.com/v1/ServiceMonitor"


def _container(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    pod = only_object(objects, kind, name)["spec"]["template"]["spec"]
    return next(c for c in pod["containers"] if c["name"] == name.rsplit("-", 1)[-1])


def _resource_of(obj: dict[str, Any]) -> str:
    """How kubectl names an object in its output: ``deployment.apps/NAME``."""
    group = obj["apiVersion"].rpartition("/")[0]
    kind = obj["kind"].lower()
    return (
        f"{kind}.{group}/{obj['metadata']['name']}"
        if group
        else f"{kind}/{obj['metadata']['name']}"
    )


def test_the_value_sets_under_test_include_the_examples() -> None:
    assert set(VALUES_SETS) >= {"default", "postgresql-ha", "privileged-agent", "agents-only"}


@pytest.mark.parametrize("values", VALUES_SETS.values(), ids=VALUES_SETS.keys())
def test_helm_lint_is_clean(kube: ControlPlane, values: Path | None) -> None:
    args = ["lint", "--strict", str(CHART)] + (["--values", str(values)] if values else [])
    result = kube.helm(*args)
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout
    assert "[ERROR]" not in result.stdout


@pytest.mark.parametrize("values", VALUES_SETS.values(), ids=VALUES_SETS.keys())
def test_every_rendered_object_is_accepted_by_the_api_server(
    kube: ControlPlane, namespace: str, values: Path | None
) -> None:
    # A release name of its own keeps the cluster-scoped names (ClusterRole) apart per test.
    release = f"backstop-{namespace}"
    objects = render(kube, release=release, namespace=namespace, values=values)
    manifest = yaml.safe_dump_all(objects)
    result = kube.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input_text=manifest
    )

    accepted = {
        line.removesuffix(" created (server dry run)")
        for line in result.stdout.splitlines()
        if line.endswith(" created (server dry run)")
    }
    assert accepted == {_resource_of(o) for o in objects}, result.stdout + result.stderr
    kinds = {o["kind"] for o in objects}
    assert {"DaemonSet", "ServiceAccount", "ClusterRole"} <= kinds
    if values is None:
        assert kinds == {
            "ServiceAccount", "ConfigMap", "PersistentVolumeClaim", "ClusterRole",
            "ClusterRoleBinding", "Service", "DaemonSet", "Deployment",
        }  # fmt: skip
    # Dry run: nothing was created.
    left = kube.kubectl("get", "all,configmaps,pvc", "-n", namespace, "-o", "name").stdout.split()
    assert [name for name in left if "backstop" in name] == []


INVALID_VALUES = [
    pytest.param(
        ["controller.replicas=3"],
        "controller.replicas is 3, but the SQLite store is one file on one volume that only one "
        "controller may open: keep controller.replicas at 1, or set store.type=postgresql with "
        "store.postgresql.existingSecret to run several replicas",
        id="sqlite-with-three-replicas",
    ),
    pytest.param(
        ["store.type=postgresql"],
        "store.type is postgresql but store.postgresql.existingSecret is empty",
        id="postgresql-without-secret",
    ),
    pytest.param(
        ["controller.enabled=false"],
        "controller.enabled is false, so set controllerAddress",
        id="no-controller-anywhere",
    ),
    pytest.param(
        ["agent.lease.seconds=6"],
        "agent.lease.seconds is 6: it must be 0 (off) or at least twice agent.reportInterval",
        id="lease-shorter-than-two-reports",
    ),
    pytest.param(
        ["controller.enrolment.enabled=false"],
        "agent.enrolment.enabled needs an enrolment port",
        id="enrolment-without-port",
    ),
]


@pytest.mark.parametrize(("settings", "message"), INVALID_VALUES)
def test_contradictory_values_stop_the_install_with_the_fix(
    kube: ControlPlane, settings: list[str], message: str
) -> None:
    flags = [f"--set={s}" for s in settings]
    result = kube.helm("template", "backstop", str(CHART), *flags, check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert result.stdout == ""


def test_several_replicas_are_fine_with_postgresql(kube: ControlPlane) -> None:
    objects = render(
        kube,
        "--set=controller.replicas=3",
        "--set=store.type=postgresql",
        "--set=store.postgresql.existingSecret=pg",
    )
    deployment = only_object(objects, "Deployment", "backstop-controller")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert only_object(objects, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def _parse_cli(args: list[str], node_name: str = "gpu-node-0") -> Any:
    """Parse a container's arguments with the real ``backstop`` parser, as the kubelet would
    pass them ($(VAR) expanded)."""
    return build_parser().parse_args([a.replace("$(NODE_NAME)", node_name) for a in args])


def test_controller_pod_is_non_root_with_a_read_only_root_and_probes_over_http(
    kube: ControlPlane,
) -> None:
    objects = render(kube)
    deployment = only_object(objects, "Deployment", "backstop-controller")
    pod = deployment["spec"]["template"]["spec"]
    container = _container(objects, "Deployment", "backstop-controller")

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"] == {
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    # One SQLite writer: never two pods on the database during an update.
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert deployment["spec"]["replicas"] == 1

    # mTLS on the gRPC port: the kubelet probes /healthz on the plain metrics port.
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": 7443, "enrolment": 7444, "metrics": 9464}
    paths = {"startupProbe": "/healthz", "livenessProbe": "/livez", "readinessProbe": "/readyz"}
    for probe, path in paths.items():  # liveness: the loop alone, not the store
        assert container[probe]["httpGet"] == {"path": path, "port": "metrics"}

    # The arguments are ones `backstop controller serve` takes, pointing at the mounts.
    assert container["command"] == ["backstop"]
    args = _parse_cli(container["args"])
    assert (args.command, args.listen, args.metrics_listen) == (
        "controller",
        "0.0.0.0:7443",
        "0.0.0.0:9464",
    )
    assert args.store == "sqlite:///var/lib/backstop/controller.db"
    assert args.enrol_listen == "0.0.0.0:7444"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert args.server_tls_dir == mounts["tls"]["mountPath"]
    assert args.trust_policy == mounts["trust-policy"]["mountPath"] + "/trust.json"
    assert mounts["tls"]["readOnly"] is True
    assert mounts["data"]["mountPath"] == "/var/lib/backstop"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "backstop-controller-data"
    assert volumes["tls"]["secret"]["secretName"] == "backstop-controller-tls"
    claim = only_object(objects, "PersistentVolumeClaim", "backstop-controller-data")
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"

    service = only_object(objects, "Service", "backstop-controller")
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == ports


def test_operator_pod_runs_backstop_operator_run_as_its_service_account(kube: ControlPlane) -> None:
    objects = render(kube, release="bs", namespace="gpu")
    deployment = only_object(objects, "Deployment", "bs-backstop-operator")
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert pod["serviceAccountName"] == "bs-backstop-operator"
    assert pod["automountServiceAccountToken"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True

    args = _parse_cli(container["args"])
    assert (args.command, args.subcommand) == ("operator", "run")
    assert args.controller == "bs-backstop-controller.gpu.svc:7443"
    assert args.cluster_name == "default"
    assert args.no_controller is False
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert args.operator_tls_dir == mounts["tls"]
    assert args.state_dir == mounts["state"]
    assert args.trust_policy == mounts["trust-policy"] + "/trust.json"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "bs-backstop-operator-tls"

    unlinked = render(kube, values=CI_VALUES / "postgresql-ha-values.yaml")
    [container] = only_object(unlinked, "Deployment", "backstop-operator")["spec"]["template"][
        "spec"
    ]["containers"]
    args = _parse_cli(container["args"])
    assert args.no_controller is True
    assert "tls" not in {m["name"] for m in container["volumeMounts"]}


def test_cloud_agents_run_backstop_cloud_run_one_per_account(kube: ControlPlane) -> None:
    assert not [
        o for o in render(kube) if o["metadata"]["name"].startswith("backstop-cloud-")
    ]  # none by default

    objects = render(
        kube, release="bs", namespace="gpu", values=CI_VALUES / "cloud-agents-values.yaml"
    )

    aws = only_object(objects, "Deployment", "bs-backstop-cloud-aws-prod")
    gcp = only_object(objects, "Deployment", "bs-backstop-cloud-gcp-ml")
    assert (aws["spec"]["replicas"], aws["spec"]["strategy"]) == (1, {"type": "Recreate"})
    pod = aws["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["envFrom"] == [{"secretRef": {"name": "backstop-aws-credentials"}}]
    args = _parse_cli(container["args"])
    assert (args.command, args.subcommand, args.provider) == ("cloud", "run", "aws")
    assert args.region == ["us-east-1", "us-west-2"]
    assert args.node_id == "aws-123456789012"
    assert args.controller == "bs-backstop-controller.gpu.svc:7443"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert args.cloud_tls_dir == mounts["tls"]
    assert args.state_dir == mounts["state"]
    assert args.trust_policy == mounts["trust-policy"] + "/trust.json"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "backstop-cloud-aws-tls"

    pod = gcp["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "backstop-cloud-gcp"
    [container] = pod["containers"]
    args = _parse_cli(container["args"])
    assert (args.provider, args.project, args.zone) == (
        "gcp",
        "ml-serving",
        ["us-central1-a", "europe-west4-b"],
    )
    assert args.report_interval == 60
    assert {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["credentials"] == (
        "/etc/backstop/cloud"
    )


def test_postgresql_store_takes_its_url_and_password_from_the_secret(kube: ControlPlane) -> None:
    objects = render(kube, values=CI_VALUES / "postgresql-ha-values.yaml")
    container = _container(objects, "Deployment", "backstop-controller")
    env = {e["name"]: e for e in container["env"]}
    assert env["BACKSTOP_STORE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "backstop-postgresql",
        "key": "url",
    }
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "backstop-postgresql",
        "key": "password",
    }
    assert "--store=$(BACKSTOP_STORE_URL)" in container["args"]
    assert [o for o in objects if o["kind"] == "PersistentVolumeClaim"] == []
    assert "data" not in {m["name"] for m in container["volumeMounts"]}
    deployment = only_object(objects, "Deployment", "backstop-controller")
    assert deployment["spec"]["replicas"] == 3
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["trust-policy"]["secret"]["secretName"] == "backstop-trust"
    assert not [
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-trust")
    ]


def _pod_security_warnings(kube: ControlPlane, namespace: str, obj: dict[str, Any]) -> str:
    result = kube.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input_text=yaml.safe_dump(obj)
    )
    return "\n".join(line for line in result.stderr.splitlines() if "PodSecurity" in line)


def test_controller_and_operator_meet_the_restricted_pod_security_standard(
    kube: ControlPlane, namespace: str
) -> None:
    # The API server's own PodSecurity admission judges the pod templates.
    kube.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/warn=restricted")
    for values in (None, CI_VALUES / "privileged-agent-values.yaml"):
        objects = render(kube, namespace=namespace, values=values)
        for name in ("backstop-controller", "backstop-operator"):
            deployment = only_object(objects, "Deployment", name)
            assert _pod_security_warnings(kube, namespace, deployment) == ""

    # The agent cannot, and says why: it is the one component that needs the node.
    agent = only_object(render(kube, namespace=namespace), "DaemonSet", "backstop-agent")
    warnings = _pod_security_warnings(kube, namespace, agent)
    assert 'would violate PodSecurity "restricted:latest"' in warnings
    for reason in (
        "host namespaces (hostPID=true)",
        'volumes "state", "cgroup", "pod-resources", "container-logs" use restricted volume type '
        '"hostPath"',
        "unrestricted capabilities",
        "runAsUser=0",
    ):
        assert reason in warnings
    assert "privileged" not in warnings


def test_trust_policy_config_map_holds_the_policy_from_values(
    kube: ControlPlane, tmp_path: Path
) -> None:
    policy = {
        "people": [
            {"name": "alice", "role": "admin", "keys": ["MCowBQYDK2VwAyEA" + "A" * 43 + "="]}
        ],
        "quorum": {"terminate": 2},
    }
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"trustPolicy": {"policy": policy}}))
    config_map = only_object(render(kube, values=values), "ConfigMap", "backstop-trust")
    assert json.loads(config_map["data"]["trust.json"]) == policy


def test_service_monitor_is_rendered_only_where_its_api_exists(kube: ControlPlane) -> None:
    enabled = "--set=metrics.serviceMonitor.enabled=true"
    without_api = render(kube, enabled)
    assert [o for o in without_api if o["kind"] == "ServiceMonitor"] == []
    notes = kube.helm("install", "backstop", str(CHART), enabled, "--dry-run=client").stdout
    assert "no ServiceMonitor was created" in notes

    objects = render(kube, enabled, f"--api-versions={SERVICE_MONITOR_API}")
    monitor = only_object(objects, "ServiceMonitor")
    selector = monitor["spec"]["selector"]
    [expression] = selector["matchExpressions"]
    assert expression["key"] == "app.kubernetes.io/component"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["backstop"]}
    [endpoint] = monitor["spec"]["endpoints"]

    # It selects exactly the controller's and the agents' Services, by their metrics port.
    selected = [
        s
        for s in objects
        if s["kind"] == "Service"
        and all(s["metadata"]["labels"].get(k) == v for k, v in selector["matchLabels"].items())
        and s["metadata"]["labels"]["app.kubernetes.io/component"] in expression["values"]
    ]
    assert sorted(s["metadata"]["name"] for s in selected) == [
        "backstop-agent",
        "backstop-controller",
    ]
    for service in selected:
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"} in endpoint[
        "relabelings"
    ]


def test_grafana_dashboard_charts_every_exported_metric_and_no_other(kube: ControlPlane) -> None:
    config_map = only_object(render(kube), "ConfigMap", "backstop-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["backstop.json"])
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    expressions = [t["expr"] for p in panels for t in p["targets"]]
    referenced = set(re.findall(r"\bbackstop_[a-z_]+", " ".join(expressions)))

    exported = exported_metrics()
    assert len(exported) >= 20
    series = exported_series()
    assert referenced <= series, referenced - series
    charted = {
        name for name, kind in exported.items() if any(s.startswith(name) for s in referenced)
    }
    assert charted == set(exported)
    # Panels do not overlap on the grid, and every one has a description.
    cells = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, panel["title"]
                cells.add((x, y))
    assert all(p["description"] for p in panels)


def test_grafana_dashboard_shows_zero_not_no_data_and_agents_down(kube: ControlPlane) -> None:
    config_map = only_object(render(kube), "ConfigMap", "backstop-dashboard")
    dashboard = json.loads(config_map["data"]["backstop.json"])
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert all(t["expr"].endswith(" or vector(0)") for p in panels for t in p["targets"])
    (down,) = [p for p in panels if p["title"] == "Agents down"]
    assert "backstop_agent_connected" in down["targets"][0]["expr"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    # The node variable reads the label the agent sets itself (no relabelling needed).
    (node,) = [v for v in dashboard["templating"]["list"] if v["name"] == "node"]
    assert node["definition"] == "label_values(backstop_agent_connected, node)"


_KEY = re.compile(r"^(?P<indent> *)(?P<key>[\w.\-/]+):(?P<rest>.*)$")


def test_every_value_has_a_comment() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    in_list_item_indent: int | None = None
    for number, line in enumerate(lines, start=1):
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if stripped.startswith("- "):
            in_list_item_indent = indent  # a list's items are part of the documented value
            continue
        if in_list_item_indent is not None and indent > in_list_item_indent:
            continue
        in_list_item_indent = None
        match = _KEY.match(line)
        if match is None:
            continue
        above = lines[number - 2].strip() if number > 1 else ""
        if not above.startswith("#") and "#" not in match["rest"]:
            undocumented.append(f"line {number}: {stripped}")
    assert undocumented == []


def test_notes_show_the_controller_certificate_names_agents_dial(kube: ControlPlane) -> None:
    notes = kube.helm("install", "bs", str(CHART), "--namespace", "gpu", "--dry-run=client").stdout
    dns = re.findall(r"--dns (\S+)", notes)
    assert dns == [
        "bs-backstop-controller",
        "bs-backstop-controller.gpu",
        "bs-backstop-controller.gpu.svc",
        "bs-backstop-controller.gpu.svc.cluster.local",
    ]
    agent = only_object(render(kube, release="bs", namespace="gpu"), "DaemonSet")
    args = agent["spec"]["template"]["spec"]["containers"][0]["args"]
    controller = next(a for a in args if a.startswith("--controller="))
    assert controller == "--controller=bs-backstop-controller.gpu.svc:7443"
    assert controller.removeprefix("--controller=").rsplit(":", 1)[0] in dns
    assert "kubectl label namespace gpu pod-security.kubernetes.io/enforce=privileged" in notes


def test_crd_is_installed_established_and_validates_corrections(
    kube: ControlPlane, crd: str
) -> None:
    conditions = json.loads(kube.kubectl("get", "crd", crd, "-o", "json").stdout)["status"][
        "conditions"
    ]
    statuses = {c["type"]: c["status"] for c in conditions}
    assert statuses.items() >= {("Established", "True"), ("NamesAccepted", "True")}

    name = f"helm-test-{uuid.uuid4().hex[:8]}"
    correction = {
        "apiVersion": "backstop.io/v1",
        "kind": "Correction",
        "metadata": {"name": name},
        "spec": {"action": "pause", "reason": "chart test", "scope": {"namespaces": ["team-a"]}},
    }
    kube.kubectl("apply", "-f", "-", input_text=yaml.safe_dump(correction))
    try:
        stored = json.loads(kube.kubectl("get", "bsc", name, "-o", "json").stdout)
        assert stored["spec"]["scope"]["gpuWorkloadsOnly"] is True  # the schema's default
        bad = {
            **correction,
            "metadata": {"name": f"{name}-bad"},
            "spec": {"action": "resume", "reason": "x"},
        }
        refused = kube.kubectl("apply", "-f", "-", input_text=yaml.safe_dump(bad), check=False)
        assert refused.returncode != 0
        assert "a resume must name the Correction it undoes in spec.resumes" in refused.stderr
    finally:
        kube.kubectl("delete", "correction", name, "--wait=false")
