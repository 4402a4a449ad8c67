"""The operator works with exactly the permissions ``backstop.operator.rbac`` lists: run as a
service account bound to a ClusterRole of those rules, it applies and reverts a shutdown
without a single request refused."""

from __future__ import annotations

import json
from pathlib import Path

from kubernetes import client as k8s

from backstop.operator.rbac import CLUSTER_ROLE_RULES
from tests.operator.rig import OperatorProcess, Rig, shutdown
from tests.support.kube import ControlPlane, wait_until


def service_account_kubeconfig(plane: ControlPlane, namespace: str, path: Path) -> Path:
    core = k8s.CoreV1Api(plane.api_client())
    token = core.create_namespaced_service_account_token(
        "backstop-operator", namespace, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "plane",
                "cluster": {
                    "server": plane.server,
                    "certificate-authority": str(plane.pki_dir / "ca.crt"),
                },
            }
        ],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "plane", "user": "operator"}}],
        "current-context": "operator",
    }
    path.write_text(json.dumps(config))
    return path


def test_the_operator_needs_no_more_than_its_cluster_role(
    crd: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    api = crd.api_client()
    core, rbac = k8s.CoreV1Api(api), k8s.RbacAuthorizationV1Api(api)
    role = f"backstop-operator-{namespace}"
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "backstop-operator"}})
    rbac.create_cluster_role({"metadata": {"name": role}, "rules": list(CLUSTER_ROLE_RULES)})
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": role},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": "backstop-operator", "namespace": namespace}
            ],
        }
    )
    kubeconfig = service_account_kubeconfig(crd, namespace, tmp_path / "operator.kubeconfig")
    as_operator = k8s.CoreV1Api(
        crd.token_client(json.loads(kubeconfig.read_text())["users"][0]["user"]["token"])
    )
    wait_until(lambda: as_operator.list_node() is not None, "the binding to take effect", 20)
    operator = OperatorProcess(
        crd, tmp_path, "--no-controller", "--resync", "1", kubeconfig=kubeconfig
    )
    rig = Rig(crd, namespace)
    try:
        operator.start()
        pool = f"pool-{namespace}"
        rig.gpu_node(f"{namespace}-a", **{"backstop.test/pool": pool})
        rig.deployment("llm", 2, node_selector={"backstop.test/pool": pool})
        rig.bare_pod("scratch", node_selector={"backstop.test/pool": pool})
        rig.wait_running("llm", 2)
        rig.wait_running("scratch", 1)
        name = f"shutdown-{namespace}"

        rig.apply(shutdown(name, [f"{namespace}-a"]))
        status = rig.wait_phase(name, "Applied")["status"]
        assert status["message"] == (
            "1 Deployment scaled to 0, 1 pod deleted, 1 node cordoned and tainted"
        )
        rig.delete_correction(name)
        rig.wait_gone(name)
        assert rig.replicas("Deployment", "llm") == 2
        assert not rig.node(f"{namespace}-a").spec.unschedulable
        assert rig.events("llm", "BackstopShutdown")
        assert rig.events("llm", "BackstopResumed")

        refused = [r for r in operator.records() if "forbidden" in json.dumps(r).lower()]
        assert refused == []
    finally:
        try:
            rig.cleanup()
        finally:
            operator.stop()
            rbac.delete_cluster_role_binding(role)
            rbac.delete_cluster_role(role)
