"""Fixtures: the real control plane with the Correction CRD installed, a namespace per test,
and the operator as a real process that is stopped (and its Corrections reverted) afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client as k8s

from tests.operator.rig import CRD_PATH, OperatorProcess, Rig
from tests.support.cluster import cluster
from tests.support.kube import ControlPlane, kube
from tests.support.kube import prebuild_kube_binaries as pytest_collection_finish

__all__ = ["cluster", "crd", "kube", "namespace", "operator", "pytest_collection_finish", "rig"]


@pytest.fixture(scope="session")
def crd(kube: ControlPlane) -> ControlPlane:
    """The plane, with the chart's Correction CRD applied and Established."""
    kube.kubectl("apply", "-f", str(CRD_PATH))
    kube.kubectl(
        "wait", "--for=condition=Established", "crd/corrections.backstop.io", "--timeout=30s"
    )
    return kube


@pytest.fixture
def namespace(crd: ControlPlane) -> Iterator[str]:
    """A fresh namespace for one test, deleted (with everything in it) afterwards."""
    name = f"op-{uuid.uuid4().hex[:8]}"
    core = k8s.CoreV1Api(crd.api_client())
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="module")
def operator(
    crd: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The operator, without a controller, resyncing every second; one per test module (a test
    that stops or kills it starts it again)."""
    process = OperatorProcess(
        crd,
        tmp_path_factory.mktemp("operator"),
        "--no-controller",
        "--cluster-name",
        "test",
        "--resync",
        "1",
    )
    process.start()
    try:
        yield process
    finally:
        code = process.stop()
        assert code == 0, f"the operator exited with {code} on SIGTERM:\n{process.tail()}"


@pytest.fixture
def rig(
    crd: ControlPlane, namespace: str, operator: OperatorProcess, request: pytest.FixtureRequest
) -> Iterator[Rig]:
    """Helpers in this test's namespace; the Corrections it applied are deleted (and so
    reverted by the still-running operator) afterwards."""
    if operator.proc is None:
        operator.start()
    helper = Rig(crd, namespace)
    try:
        yield helper
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(operator.tail(60)[-20000:])
        if operator.proc is None:
            operator.start()
        helper.cleanup()
