"""Fixtures for tests against a real Kubernetes control plane (see tests.support.kube)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client as k8s

from tests.support.kube import ControlPlane, kube
from tests.support.kube import prebuild_kube_binaries as pytest_collection_finish

__all__ = ["kube", "namespace", "pytest_collection_finish"]


@pytest.fixture
def namespace(kube: ControlPlane) -> Iterator[str]:
    """A fresh namespace for one test, deleted (with everything in it) afterwards."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    core = k8s.CoreV1Api(kube.api_client())
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name, propagation_policy="Background")
