"""The operator under test as a real process, and helpers over the real control plane.

``OperatorProcess`` runs ``python -m backstop operator run`` against the test plane's admin
kubeconfig, in its own process group, logging JSON to a file. ``Rig`` creates model-server
Deployments, StatefulSets and bare pods that request ``nvidia.com/gpu`` (the real scheduler
places them on kwok GPU nodes, which run them), applies Corrections with ``kubectl apply`` the
way a person would, and waits for what the operator is expected to do.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from tests.support.kube import REPO_ROOT, ControlPlane, wait_until

T = TypeVar("T")

CRD_PATH = REPO_ROOT / "helm" / "backstop" / "crds" / "corrections.backstop.io.yaml"
GROUP, VERSION, PLURAL = "backstop.io", "v1", "corrections"
MODEL_IMAGE = "vllm/vllm-openai:v0.6.3"
PLAIN_IMAGE = "registry.invalid/web:1"


def pause(name: str, namespace: str, *, scope_lines: str = "") -> str:
    """A pause Correction over one namespace (plus any extra scope lines)."""
    return f"""
apiVersion: backstop.io/v1
kind: Correction
metadata:
  name: {name}
spec:
  action: pause
  reason: the model's own guardrails failed
  scope:
    namespaces: [{namespace}]
{scope_lines}"""


def resume(name: str, original: str) -> str:
    return f"""
apiVersion: backstop.io/v1
kind: Correction
metadata:
  name: {name}
spec:
  action: resume
  resumes: {original}
  reason: fixed and reviewed
"""


def shutdown(name: str, nodes: list[str]) -> str:
    """A shutdown Correction fencing these nodes (and whatever runs on them)."""
    return f"""
apiVersion: backstop.io/v1
kind: Correction
metadata:
  name: {name}
spec:
  action: shutdown
  reason: exfiltration in progress
  scope:
    nodes: [{", ".join(nodes)}]
"""


def gpu_pod_spec(
    gpus: int, image: str = MODEL_IMAGE, node_selector: Mapping[str, str] | None = None
) -> dict[str, Any]:
    resources = {"limits": {"nvidia.com/gpu": str(gpus)}} if gpus else {}
    return {
        "containers": [{"name": "server", "image": image, "resources": resources}],
        "nodeSelector": dict(node_selector or {}),
        "terminationGracePeriodSeconds": 0,
    }


def pod_is_running(pod: k8s.V1Pod) -> bool:
    statuses = pod.status.container_statuses or []
    return (
        pod.status.phase == "Running"
        and pod.metadata.deletion_timestamp is None
        and bool(statuses)
        and all(s.state.running is not None for s in statuses)
    )


class OperatorProcess:
    """``backstop operator run`` as a child process; ``stop`` or ``kill`` it."""

    def __init__(
        self,
        plane: ControlPlane,
        workdir: Path,
        *extra: str,
        global_args: tuple[str, ...] = (),
        kubeconfig: Path | None = None,
    ) -> None:
        self.plane = plane
        self.kubeconfig = kubeconfig or plane.kubeconfig
        self.workdir = workdir
        self.extra = extra
        self.global_args = global_args
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "operator.log"
        self.starts = 0

    def start(self, timeout_s: float = 30.0) -> None:
        self.starts += 1
        marker = f"--- start {self.starts}\n"
        with self.log_path.open("a") as log:
            log.write(marker)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "backstop",
                "--log-format",
                "json",
                "--log-level",
                "info",
                *self.global_args,
                "operator",
                "run",
                "--kubeconfig",
                str(self.kubeconfig),
                "--state-dir",
                str(self.workdir / "operator-state"),
                *self.extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
        log.close()

        def started() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"operator exited with {self.proc.returncode}:\n{self.tail()}")
            text = self.log_path.read_text(errors="replace")
            return "operator started" in text.rsplit(marker, 1)[-1]

        wait_until(started, "the operator to start", timeout_s)

    def records(self) -> list[dict[str, Any]]:
        """The JSON log records of every start so far."""
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    found.append(record)
        return found

    def stop(self, grace_s: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after ``grace_s``; the exit code."""
        if self.proc is None:
            return 0
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL: a crash, no cleanup."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Rig:
    """One test's namespace on the shared plane, and what it applies there."""

    def __init__(self, plane: ControlPlane, namespace: str) -> None:
        self.plane = plane
        self.namespace = namespace
        api = plane.api_client()
        self.apps = k8s.AppsV1Api(api)
        self.core = k8s.CoreV1Api(api)
        self.custom = k8s.CustomObjectsApi(api)
        self.applied: list[str] = []
        self.nodes: list[str] = []

    # -- workloads --------------------------------------------------------------------------

    def deployment(
        self,
        name: str,
        replicas: int,
        *,
        gpus: int = 1,
        image: str = MODEL_IMAGE,
        labels: Mapping[str, str] | None = None,
        node_selector: Mapping[str, str] | None = None,
    ) -> None:
        match = {"app": name}
        self.apps.create_namespaced_deployment(
            self.namespace,
            {
                "metadata": {"name": name, "labels": {**match, **(labels or {})}},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": match},
                    "template": {
                        "metadata": {"labels": {**match, **(labels or {})}},
                        "spec": gpu_pod_spec(gpus, image, node_selector),
                    },
                },
            },
        )

    def statefulset(self, name: str, replicas: int, *, gpus: int = 1) -> None:
        match = {"app": name}
        self.apps.create_namespaced_stateful_set(
            self.namespace,
            {
                "metadata": {"name": name, "labels": match},
                "spec": {
                    "replicas": replicas,
                    "serviceName": name,
                    "selector": {"matchLabels": match},
                    "template": {"metadata": {"labels": match}, "spec": gpu_pod_spec(gpus)},
                },
            },
        )

    def bare_pod(
        self, name: str, *, gpus: int = 1, node_selector: Mapping[str, str] | None = None
    ) -> None:
        self.core.create_namespaced_pod(
            self.namespace,
            {
                "metadata": {"name": name, "labels": {"app": name}},
                "spec": gpu_pod_spec(gpus, node_selector=node_selector),
            },
        )

    def read(self, kind: str, name: str) -> Any:
        if kind == "Deployment":
            return self.apps.read_namespaced_deployment(name, self.namespace)
        return self.apps.read_namespaced_stateful_set(name, self.namespace)

    def replicas(self, kind: str, name: str) -> int:
        return int(self.read(kind, name).spec.replicas)

    def scale(self, kind: str, name: str, replicas: int) -> None:
        self.plane.kubectl(
            "scale", f"{kind.lower()}/{name}", f"--replicas={replicas}", "-n", self.namespace
        )

    def pods(self, app: str) -> list[k8s.V1Pod]:
        return list(
            self.core.list_namespaced_pod(self.namespace, label_selector=f"app={app}").items
        )

    def running(self, app: str) -> list[k8s.V1Pod]:
        return [p for p in self.pods(app) if pod_is_running(p)]

    def wait_running(self, app: str, count: int, timeout_s: float = 60) -> list[k8s.V1Pod]:
        def probe() -> list[k8s.V1Pod] | None:
            running = self.running(app)
            exact = len(running) == count and len(self.pods(app)) == count
            return running if exact else None

        if count == 0:
            wait_until(lambda: not self.pods(app), f"no pods of {app}", timeout_s)
            return []
        return wait_until(probe, f"{count} running pods of {app}", timeout_s)

    def events(self, name: str, reason: str = "") -> list[k8s.CoreV1Event]:
        found = self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}"
        ).items
        return [e for e in found if not reason or e.reason == reason]

    # -- nodes ------------------------------------------------------------------------------

    def gpu_node(self, name: str, **labels: str) -> None:
        self.nodes.append(name)
        self.plane.add_gpu_node(name, labels=labels)

    def node(self, name: str) -> k8s.V1Node:
        return self.core.read_node(name)

    # -- corrections ------------------------------------------------------------------------

    def apply(self, manifest: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``kubectl apply -f -``, as a person would."""
        result = self.plane.kubectl("apply", "-f", "-", input_text=manifest, check=check)
        for line in result.stdout.splitlines():
            if line.startswith("correction.backstop.io/"):
                self.applied.append(line.split()[0].split("/", 1)[1])
        return result

    def correction(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        return found

    def wait_phase(self, name: str, phase: str, timeout_s: float = 30) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            c = self.correction(name)
            status = c.get("status") or {}
            settled = status.get("observedGeneration") == c["metadata"]["generation"]
            return c if status.get("phase") == phase and settled else None

        return wait_until(probe, f"Correction {name} to be {phase}", timeout_s)

    def delete_correction(self, name: str) -> None:
        with contextlib.suppress(ApiException):
            self.custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)

    def wait_gone(self, name: str, timeout_s: float = 30) -> None:
        def gone() -> bool:
            try:
                self.correction(name)
            except ApiException as exc:
                if exc.status == 404:
                    return True
                raise
            return False

        wait_until(gone, f"Correction {name} to be gone", timeout_s)

    def cleanup(self) -> None:
        """Delete what this test applied (the operator, still running, reverts it), then force
        out anything left, so no test inherits another's fence."""
        for name in self.applied:
            self.delete_correction(name)
        stuck = []
        for name in self.applied:
            try:
                self.wait_gone(name, timeout_s=30)
            except Exception:
                stuck.append(name)
                with contextlib.suppress(ApiException):
                    self.custom.patch_cluster_custom_object(
                        GROUP, VERSION, PLURAL, name, {"metadata": {"finalizers": []}}
                    )
        for node in self.nodes:
            with contextlib.suppress(ApiException):
                self.core.delete_node(node)
        assert not stuck, f"Corrections not finalized by the operator: {stuck}"


def poll(probe: Callable[[], T | None], what: str, timeout_s: float = 30) -> T:
    """``wait_until`` with a name that reads well in tests."""
    return wait_until(probe, what, timeout_s)


def settle(seconds: float) -> None:
    """Give the operator a chance to act, for assertions that something did NOT happen."""
    time.sleep(seconds)
