"""The operator's RBAC, installed for real: its ServiceAccount may do exactly what the operator
does (reconcile Corrections, scale workloads, delete bare pods, fence nodes, record events) and
nothing else: no Secrets, no creating or deleting workloads, no deleting nodes, no wildcard.
Checked through impersonation (``kubectl auth can-i --as``) and with the account's own token."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from backstop.operator.rbac import CLUSTER_ROLE_RULES
from tests.helm.conftest import render
from tests.support.kube import ControlPlane, wait_until

OPERATOR_TEMPLATES = ("serviceaccount", "clusterrole", "clusterrolebinding")

# (verb, resource, subresource, scope): scope "ns" is one namespace, "all" every namespace.
NEEDED = [
    *[(v, "corrections.backstop.io", "", "all") for v in ("get", "list", "watch", "create")],
    ("patch", "corrections.backstop.io", "", "all"),
    *[(v, "corrections.backstop.io", "status", "all") for v in ("get", "patch")],
    *[
        (v, f"{kind}.apps", "", scope)
        for kind in ("deployments", "statefulsets")
        for v in ("get", "list", "watch", "patch")
        for scope in ("ns", "all")
    ],
    ("list", "replicasets.apps", "", "all"),
    *[(v, "pods", "", scope) for v in ("list", "delete") for scope in ("ns", "all")],
    *[(v, "nodes", "", "all") for v in ("get", "list", "patch")],
    ("create", "events", "", "ns"),
]

DENIED = [
    ("get", "secrets", "", "ns"),
    ("list", "secrets", "", "all"),
    ("watch", "secrets", "", "all"),
    ("get", "configmaps", "", "ns"),
    ("create", "deployments.apps", "", "ns"),
    ("delete", "deployments.apps", "", "ns"),
    ("update", "deployments.apps", "", "ns"),
    ("delete", "statefulsets.apps", "", "ns"),
    ("patch", "deployments.apps", "scale", "ns"),
    ("create", "pods", "", "ns"),
    ("patch", "pods", "", "ns"),
    ("get", "pods", "log", "ns"),
    ("create", "pods", "exec", "ns"),
    ("create", "pods", "eviction", "ns"),
    ("delete", "nodes", "", "all"),
    ("create", "nodes", "", "all"),
    ("update", "nodes", "", "all"),
    ("patch", "nodes", "status", "all"),
    ("delete", "corrections.backstop.io", "", "all"),
    ("update", "corrections.backstop.io", "", "all"),
    ("patch", "replicasets.apps", "", "ns"),
    ("create", "serviceaccounts", "token", "ns"),
    ("create", "clusterroles.rbac.authorization.k8s.io", "", "all"),
    ("bind", "clusterroles.rbac.authorization.k8s.io", "", "all"),
    ("escalate", "clusterroles.rbac.authorization.k8s.io", "", "all"),
    ("impersonate", "users", "", "all"),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io", "", "all"),
    ("*", "*", "", "all"),
]

# What the ClusterRole grants, as (apiGroup, resource, verb): the whole of it, which is what
# backstop.operator.rbac lists (and the operator's own tests run it bound to).
GRANTED = {
    (group, resource, verb)
    for rule in CLUSTER_ROLE_RULES
    for group in rule["apiGroups"]
    for resource in rule["resources"]
    for verb in rule["verbs"]
}


def test_the_chart_grants_exactly_the_operators_rules(kube: ControlPlane) -> None:
    (role,) = render(kube, "--show-only=templates/operator/clusterrole.yaml")
    assert role["rules"] == list(CLUSTER_ROLE_RULES)


@pytest.fixture
def operator_account(kube: ControlPlane, namespace: str, crd: str) -> Iterator[str]:
    """The chart's operator ServiceAccount, ClusterRole and binding, applied for real; the
    account's name. The cluster-scoped objects are deleted afterwards."""
    release = f"backstop-{namespace}"
    flags = [f"--show-only=templates/operator/{t}.yaml" for t in OPERATOR_TEMPLATES]
    objects = render(kube, *flags, release=release, namespace=namespace)
    assert sorted(o["kind"] for o in objects) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "ServiceAccount",
    ]
    kube.kubectl("apply", "-n", namespace, "-f", "-", input_text=yaml.safe_dump_all(objects))
    try:
        yield f"{release}-operator"
    finally:
        for obj in objects:
            if obj["kind"].startswith("Cluster"):
                kube.kubectl("delete", obj["kind"].lower(), obj["metadata"]["name"], "--wait=false")


def _can_i(
    kube: ControlPlane, user: str, namespace: str, verb: str, resource: str, sub: str, scope: str
) -> bool:
    args = ["auth", "can-i", verb, resource, f"--as={user}"]
    args += ["--all-namespaces"] if scope == "all" else ["-n", namespace]
    args += [f"--subresource={sub}"] if sub else []
    result = kube.kubectl(*args, check=False)
    assert result.returncode in (0, 1), result.stderr
    assert result.stdout.strip() in ("yes", "no"), result.stdout + result.stderr
    return result.returncode == 0


def test_operator_may_do_everything_it_needs(
    kube: ControlPlane, namespace: str, operator_account: str
) -> None:
    user = f"system:serviceaccount:{namespace}:{operator_account}"
    wait_until(
        lambda: _can_i(kube, user, namespace, "list", "corrections.backstop.io", "", "all"),
        "the operator's ClusterRoleBinding to take effect",
        timeout_s=20,
    )
    refused = [need for need in NEEDED if not _can_i(kube, user, namespace, *need)]
    assert refused == []


def test_operator_may_not_read_secrets_or_do_anything_else(
    kube: ControlPlane, namespace: str, operator_account: str
) -> None:
    user = f"system:serviceaccount:{namespace}:{operator_account}"
    wait_until(
        lambda: _can_i(kube, user, namespace, "list", "corrections.backstop.io", "", "all"),
        "the operator's ClusterRoleBinding to take effect",
        timeout_s=20,
    )
    allowed = [deny for deny in DENIED if _can_i(kube, user, namespace, *deny)]
    assert allowed == []


def _resource_rules(kube: ControlPlane, namespace: str, account: str) -> set[tuple[str, str, str]]:
    """What ``account`` may do in ``namespace``, asked with its own token."""
    core = k8s.CoreV1Api(kube.api_client())
    token = core.create_namespaced_service_account_token(
        account, namespace, {"spec": {"expirationSeconds": 600}}
    ).status.token
    review = k8s.AuthorizationV1Api(kube.token_client(token)).create_self_subject_rules_review(
        {"spec": {"namespace": namespace}}
    )
    return {
        (group, resource, verb)
        for rule in review.status.resource_rules
        for group in rule.api_groups or [""]
        for resource in rule.resources or []
        for verb in rule.verbs
    }


def test_operator_holds_exactly_its_cluster_role_and_nothing_more(
    kube: ControlPlane, namespace: str, operator_account: str
) -> None:
    # What every account gets (self reviews) is subtracted: a fresh, unbound account shows it.
    k8s.CoreV1Api(kube.api_client()).create_namespaced_service_account(
        namespace, {"metadata": {"name": "nobody"}}
    )
    baseline = _resource_rules(kube, namespace, "nobody")

    def granted() -> set[tuple[str, str, str]] | None:
        rules = _resource_rules(kube, namespace, operator_account) - baseline
        return rules or None

    rules = wait_until(granted, "the operator's rules to show", timeout_s=20)
    assert rules == GRANTED
    assert not any("*" in part for rule in rules for part in rule)


def test_operator_token_reads_corrections_and_is_refused_secrets(
    kube: ControlPlane, namespace: str, operator_account: str
) -> None:
    core = k8s.CoreV1Api(kube.api_client())
    token = core.create_namespaced_service_account_token(
        operator_account, namespace, {"spec": {"expirationSeconds": 600}}
    ).status.token
    as_operator = kube.token_client(token)
    custom = k8s.CustomObjectsApi(as_operator)

    listed = wait_until(
        lambda: custom.list_cluster_custom_object("backstop.io", "v1", "corrections"),
        "the operator to list Corrections",
        timeout_s=20,
    )
    assert listed["kind"] == "CorrectionList"
    assert k8s.CoreV1Api(as_operator).list_node().items
    for read_secrets in (
        lambda: k8s.CoreV1Api(as_operator).list_namespaced_secret(namespace),
        lambda: k8s.CoreV1Api(as_operator).list_secret_for_all_namespaces(),
        lambda: k8s.CoreV1Api(as_operator).read_namespaced_config_map(
            "kube-root-ca.crt", namespace
        ),
    ):
        with pytest.raises(ApiException) as denied:
            read_secrets()
        assert denied.value.status == 403
