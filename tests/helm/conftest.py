"""Fixtures for the Helm chart's tests: a real control plane (see tests.support.kube), a fresh
namespace per test, the chart rendered with ``helm template``, the CRD installed, Prometheus's
promtool (see tests.support.prometheus_builds), and the metrics the daemons export."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from backstop.telemetry.series import Metric
from tests.support.kube import REPO_ROOT, ControlPlane, kube, prebuild_kube_binaries, wait_until
from tests.support.prometheus_builds import prebuild, promtool_binary

__all__ = ["crd", "kube", "namespace", "promtool", "pytest_collection_finish"]

CHART = REPO_ROOT / "helm" / "backstop"
CRD_FILE = CHART / "crds" / "corrections.backstop.io.yaml"
CI_VALUES = CHART / "ci"


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the control plane's binaries and promtool before the first test that needs them,
    outside per-test timeouts (each is a first-time build of minutes, cached afterwards)."""
    prebuild_kube_binaries(session)
    prebuild(session, "promtool", promtool_binary)


def render(
    kube: ControlPlane,
    *flags: str,
    release: str = "backstop",
    namespace: str = "backstop",
    values: Path | None = None,
) -> list[dict[str, Any]]:
    """``helm template`` of the chart: the rendered objects, in order."""
    args = ["template", release, str(CHART), "--namespace", namespace, *flags]
    if values is not None:
        args += ["--values", str(values)]
    return [doc for doc in yaml.safe_load_all(kube.helm(*args).stdout) if doc]


def only(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one rendered object of ``kind`` (and ``name``); fails if there is not exactly one."""
    found = [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"{len(found)} {kind} objects named {name}: {found}"
    return found[0]


@pytest.fixture
def namespace(kube: ControlPlane) -> Iterator[str]:
    """A fresh namespace for one test, deleted (with everything in it) afterwards."""
    name = f"helm-{uuid.uuid4().hex[:8]}"
    core = k8s.CoreV1Api(kube.api_client())
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="module")
def crd(kube: ControlPlane) -> str:
    """The chart's CRD, installed for real (``kubectl apply`` of crds/) and Established."""
    kube.kubectl("apply", "-f", str(CRD_FILE))
    name = yaml.safe_load(CRD_FILE.read_text())["metadata"]["name"]
    extensions = k8s.ApiextensionsV1Api(kube.api_client())

    def established() -> bool:
        conditions = extensions.read_custom_resource_definition(name).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    wait_until(established, f"CRD {name} to be Established", timeout_s=30)
    return name


@pytest.fixture(scope="session")
def promtool() -> Path:
    """Prometheus's promtool at the pinned version; skips the test where Go cannot build it."""
    try:
        return promtool_binary()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


def exported_metrics() -> dict[str, str]:
    """Every metric the controller, agent and link export: name -> type."""
    from backstop.agent import metrics as agent_metrics
    from backstop.controller import metrics as controller_metrics
    from backstop.uplink import metrics as link_metrics

    exported: dict[str, str] = {}
    for module in (agent_metrics, controller_metrics, link_metrics):
        for value in vars(module).values():
            if isinstance(value, Metric):
                name = value.name.removesuffix("_total") if value.kind == "counter" else value.name
                exported[name] = value.kind
    return exported


def exported_series() -> set[str]:
    """The series names of :func:`exported_metrics` (counters end in _total, histograms are
    read through _bucket)."""
    return {
        name + suffix
        for name, kind in exported_metrics().items()
        for suffix in {"counter": ["_total"], "histogram": ["_bucket"]}.get(kind, [""])
    }
