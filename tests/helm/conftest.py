"""Fixtures for the Helm chart's tests: a real control plane (see tests.support.kube), a fresh
namespace per test, the chart rendered with ``helm template``, and the CRD installed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from tests.support.kube import REPO_ROOT, ControlPlane, kube, wait_until
from tests.support.kube import prebuild_kube_binaries as pytest_collection_finish

__all__ = ["crd", "kube", "namespace", "pytest_collection_finish"]

CHART = REPO_ROOT / "helm" / "backstop"
CRD_FILE = CHART / "crds" / "corrections.backstop.io.yaml"
CI_VALUES = CHART / "ci"


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
