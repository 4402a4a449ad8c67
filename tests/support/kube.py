"""A real Kubernetes control plane for tests, started from locally built binaries.

``ControlPlane`` runs etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok as
child processes on free loopback ports, the way controller-runtime's envtest runs its API server:
TLS everywhere from a throwaway CA, RBAC and Node authorization, service-account tokens signed
with a key of its own, a client certificate for an admin in ``system:masters``. kwok plays the
kubelet for fake GPU nodes (``nvidia.com/gpu: 8`` allocatable, GPU product labels), so pods the
real scheduler binds to them reach Running. Each process has its own process group and a log
file; ``stop`` ends every group (SIGTERM, then SIGKILL) and checks that nothing is left.

The binaries come from ``scripts/k8s/build.sh``: built once from the Go module proxy and cached
by version, so later runs only check that they are there. ``prebuild_kube_binaries`` (a
``pytest_collection_finish`` hook that conftest modules re-export) runs a first build before any
test starts, outside per-test timeouts. The ``kube`` fixture is one control plane per session.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException

from tests.support.kube_pki import CertificateAuthority, CertKey, service_account_keys
from tests.support.spawn import dying_with_parent

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "k8s" / "build.sh"
VERSIONS_FILE = REPO_ROOT / "scripts" / "k8s" / "versions.env"

#: The annotation kwok is told to manage nodes by.
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_GPU_PRODUCT = "NVIDIA-H100-80GB-HBM3"
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"
_STOP_ORDER = (
    ("kwok", "kube-scheduler", "kube-controller-manager"),
    ("kube-apiserver",),
    ("etcd",),
)

T = TypeVar("T")


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or stopped cleanly."""


class _Exited(ControlPlaneError):
    """A component process exited while we waited for it."""


def pinned_versions() -> dict[str, str]:
    """The KEY=value pins of scripts/k8s/versions.env."""
    pins: dict[str, str] = {}
    for line in VERSIONS_FILE.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            pins[key.strip()] = value.strip()
    return pins


def build_binaries(*, show_progress: bool = False) -> Path:
    """Run scripts/k8s/build.sh (about a second when cached) and return its bin directory.

    With ``show_progress`` the script's progress lines go to this process's stderr; otherwise
    they are kept and shown only if the build fails.
    """
    stderr = None if show_progress else subprocess.PIPE
    proc = subprocess.run(
        [str(BUILD_SCRIPT)], stdout=subprocess.PIPE, stderr=stderr, text=True, check=False
    )
    if proc.returncode != 0:
        raise ControlPlaneError(
            f"{BUILD_SCRIPT} failed with exit code {proc.returncode}:\n{proc.stderr or ''}"
        )
    return Path(proc.stdout.strip().splitlines()[-1])


def wait_until(probe: Callable[[], T | None], what: str, timeout_s: float = 60.0) -> T:
    """Poll ``probe`` until it returns something truthy; raise with the last error on timeout."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while True:
        try:
            value = probe()
        except (ApiException, OSError, ValueError, KeyError) as exc:
            last_error, value = exc, None
        if value:
            return value
        if time.monotonic() > deadline:
            raise ControlPlaneError(
                f"timed out after {timeout_s} s waiting for {what}: {last_error}"
            )
        time.sleep(0.2)


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def gpu_node_manifest(
    name: str,
    *,
    gpus: int = 8,
    product: str = DEFAULT_GPU_PRODUCT,
    gpu_memory_mib: int = 81559,
    cpu: str = "96",
    memory: str = "1Ti",
    pods: int = 110,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A Node that kwok manages: GPU capacity and the labels NVIDIA's feature discovery sets."""
    resources = {
        "cpu": cpu,
        "memory": memory,
        "pods": str(pods),
        "ephemeral-storage": "1Ti",
        GPU_RESOURCE: str(gpus),
    }
    node_labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.product": product,
        "nvidia.com/gpu.count": str(gpus),
        "nvidia.com/gpu.memory": str(gpu_memory_mib),
        **(labels or {}),
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": node_labels,
            "annotations": {KWOK_NODE_ANNOTATION[0]: KWOK_NODE_ANNOTATION[1]},
        },
        "spec": {},
        "status": {"capacity": resources, "allocatable": resources},
    }


def node_is_ready(node: k8s.V1Node) -> bool:
    """Whether the node's Ready condition is True."""
    conditions = (node.status.conditions if node.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


@dataclass(frozen=True)
class Component:
    """One control-plane process: its argv and, where it serves one, its health URL."""

    name: str
    argv: list[str]
    health_url: str | None = None


def _process_groups() -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        groups.setdefault(int(fields[2]), []).append(int(entry.name))
    return groups


class ControlPlane:
    """etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok under ``workdir``.

    Start it from the main thread (the components die with the thread that started them).
    """

    def __init__(self, workdir: Path, bin_dir: Path) -> None:
        self.workdir = workdir
        self.bin_dir = bin_dir
        self.kwok_stages = bin_dir.parent / "share" / "kwok-stages.yaml"
        self.pki_dir = workdir / "pki"
        self.log_dir = workdir / "logs"
        self.kubeconfig = workdir / "admin.kubeconfig"
        (
            self.etcd_port,
            self.etcd_peer_port,
            self.apiserver_port,
            self.controller_manager_port,
            self.scheduler_port,
        ) = free_ports(5)
        self.server = f"https://127.0.0.1:{self.apiserver_port}"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.timings: dict[str, float] = {}
        self._groups: list[int] = []
        self._ssl: ssl.SSLContext | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Write certificates and kubeconfigs, start every component, wait until each is ready.

        On failure everything already started is stopped and the error names the log files.
        """
        began = time.monotonic()
        try:
            self._write_pki_and_kubeconfigs()
            components = self._components()
            self._launch(components["etcd"])
            self._wait_healthy(components["etcd"], timeout_s=60)
            self.timings["etcd"] = time.monotonic() - began
            self._launch(components["kube-apiserver"])
            self._wait_healthy(components["kube-apiserver"], timeout_s=120)
            self.timings["kube-apiserver"] = time.monotonic() - began
            for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
                self._launch(components[name])
            for name in ("kube-controller-manager", "kube-scheduler"):
                self._wait_healthy(components[name], timeout_s=90)
                self.timings[name] = time.monotonic() - began
            # Pods need their namespace's service account, which the controller manager makes.
            core = k8s.CoreV1Api(self.api_client())
            wait_until(
                lambda: core.read_namespaced_service_account("default", "default"),
                "the default service account (kube-controller-manager)",
                timeout_s=60,
            )
            self.timings["ready"] = time.monotonic() - began
        except BaseException:
            self.stop()
            raise
        log.info("control plane ready", extra={"server": self.server, "timings": self.timings})

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM each process group (kwok and controllers, then the API server, then etcd),
        SIGKILL what outlives ``grace_s``; raise if any process of those groups is left."""
        for phase in _STOP_ORDER:
            procs = [self.processes[name] for name in phase if name in self.processes]
            for proc in procs:
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            for proc in procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(max(0.05, deadline - time.monotonic()))
                if proc.poll() is None:
                    log.warning("SIGKILL after %.0f s", grace_s, extra={"pid": proc.pid})
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        left = self.leftover_processes()
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if left:
            raise ControlPlaneError(f"processes left behind after stop (now killed): {left}")

    def leftover_processes(self) -> list[int]:
        """PIDs still alive in any process group this control plane started."""
        groups = _process_groups()
        return sorted(pid for group in self._groups for pid in groups.get(group, []))

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- clients and tools ----------------------------------------------------------------

    def api_client(self) -> k8s.ApiClient:
        """A new client for the admin (``system:masters``) from the kubeconfig."""
        return k8s_config.new_client_from_config(config_file=str(self.kubeconfig))

    def token_client(self, token: str) -> k8s.ApiClient:
        """A client that authenticates with a bearer token only (e.g. a service account's)."""
        configuration = k8s.Configuration()
        configuration.host = self.server
        configuration.ssl_ca_cert = str(self.pki_dir / "ca.crt")
        configuration.api_key = {"authorization": token}
        configuration.api_key_prefix = {"authorization": "Bearer"}
        return k8s.ApiClient(configuration)

    def kubectl(
        self, *args: str, input_text: str | None = None, check: bool = True, timeout_s: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl as the admin; raise ControlPlaneError on a non-zero exit if ``check``."""
        return self._tool("kubectl", args, input_text, check, timeout_s)

    def helm(
        self, *args: str, input_text: str | None = None, check: bool = True, timeout_s: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run helm as the admin, with its cache, config and data homes under ``workdir``."""
        return self._tool("helm", args, input_text, check, timeout_s)

    def tool_env(self) -> dict[str, str]:
        """The environment kubectl and helm run in: this plane's kubeconfig, private caches."""
        env = dict(os.environ)
        env.update(
            KUBECONFIG=str(self.kubeconfig),
            KUBECACHEDIR=str(self.workdir / "kubectl-cache"),
            HELM_CACHE_HOME=str(self.workdir / "helm" / "cache"),
            HELM_CONFIG_HOME=str(self.workdir / "helm" / "config"),
            HELM_DATA_HOME=str(self.workdir / "helm" / "data"),
            PATH=f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}",
        )
        return env

    def add_gpu_node(self, name: str, *, wait: bool = True, **spec: Any) -> k8s.V1Node:
        """Register a fake GPU node that kwok manages (see ``gpu_node_manifest`` for ``spec``);
        with ``wait``, return it once kwok has made it Ready."""
        core = k8s.CoreV1Api(self.api_client())
        core.create_node(gpu_node_manifest(name, **spec))
        if not wait:
            return core.read_node(name)
        return self.wait_node_ready(name)

    def wait_node_ready(self, name: str, timeout_s: float = 60) -> k8s.V1Node:
        """The node, once its Ready condition is True."""
        core = k8s.CoreV1Api(self.api_client())

        kwok = self.processes.get("kwok")

        def ready() -> k8s.V1Node | None:
            if kwok is not None and kwok.poll() is not None:
                raise _Exited(f"kwok exited with {kwok.returncode}:\n{self.log_tail('kwok')}")
            node = core.read_node(name)
            return node if node_is_ready(node) else None

        return wait_until(ready, f"node {name} to be Ready (kwok)", timeout_s)

    def log_path(self, component: str) -> Path:
        """Where a component's stdout and stderr go."""
        return self.log_dir / f"{component}.log"

    def log_tail(self, component: str, lines: int = 30) -> str:
        """The last lines of a component's log."""
        try:
            text = self.log_path(component).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- internals ------------------------------------------------------------------------

    def _tool(
        self,
        name: str,
        args: tuple[str, ...],
        input_text: str | None,
        check: bool,
        timeout_s: float,
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.bin_dir / name), *args],
            input=input_text,
            capture_output=True,
            text=True,
            env=self.tool_env(),
            timeout=timeout_s,
            check=False,
        )
        if check and proc.returncode != 0:
            raise ControlPlaneError(
                f"{name} {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}"
            )
        return proc

    def _write_pki_and_kubeconfigs(self) -> None:
        self.pki_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        ca = CertificateAuthority()
        ca.cert_key.write(self.pki_dir / "ca.crt", self.pki_dir / "ca.key")
        ca.issue(
            "kube-apiserver",
            dns_names=[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
            ip_addresses=["127.0.0.1", SERVICE_IP],
            server=True,
        ).write(self.pki_dir / "apiserver.crt", self.pki_dir / "apiserver.key")
        for name in ("kube-controller-manager", "kube-scheduler"):
            serving = ca.issue(
                name, dns_names=["localhost"], ip_addresses=["127.0.0.1"], server=True
            )
            serving.write(
                self.pki_dir / f"{name}-serving.crt", self.pki_dir / f"{name}-serving.key"
            )
        service_account_keys().write(self.pki_dir / "sa.pub", self.pki_dir / "sa.key")
        ca_pem = ca.cert_key.cert_pem
        users = {
            "admin": ca.issue("backstop-admin", organizations=["system:masters"], client=True),
            "kube-controller-manager": ca.issue("system:kube-controller-manager", client=True),
            "kube-scheduler": ca.issue("system:kube-scheduler", client=True),
            "kwok": ca.issue("kwok-controller", organizations=["system:masters"], client=True),
        }
        for user, cert in users.items():
            path = self.kubeconfig if user == "admin" else self.workdir / f"{user}.kubeconfig"
            path.write_text(json.dumps(self._kubeconfig(user, ca_pem, cert), indent=2))
            path.chmod(0o600)
        self._ssl = ssl.create_default_context(cafile=str(self.pki_dir / "ca.crt"))
        users["admin"].write(self.pki_dir / "admin.crt", self.pki_dir / "admin.key")
        self._ssl.load_cert_chain(self.pki_dir / "admin.crt", self.pki_dir / "admin.key")

    def _kubeconfig(self, user: str, ca_pem: bytes, cert: CertKey) -> dict[str, Any]:
        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode()

        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "backstop-test",
                    "cluster": {"server": self.server, "certificate-authority-data": b64(ca_pem)},
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate-data": b64(cert.cert_pem),
                        "client-key-data": b64(cert.key_pem),
                    },
                }
            ],
            "contexts": [{"name": user, "context": {"cluster": "backstop-test", "user": user}}],
            "current-context": user,
        }

    def _components(self) -> dict[str, Component]:
        pki, work, bin_dir = self.pki_dir, self.workdir, self.bin_dir
        etcd_url = f"http://127.0.0.1:{self.etcd_port}"
        peer_url = f"http://127.0.0.1:{self.etcd_peer_port}"
        etcd = Component(
            "etcd",
            [
                str(bin_dir / "etcd"),
                "--name=backstop-test",
                f"--data-dir={work / 'etcd-data'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=backstop-test={peer_url}",
                "--unsafe-no-fsync=true",
            ],
            f"{etcd_url}/health",
        )
        apiserver = Component(
            "kube-apiserver",
            [
                str(bin_dir / "kube-apiserver"),
                "--advertise-address=127.0.0.1",
                # A loopback address cannot back the kubernetes Service's endpoints (as envtest).
                "--endpoint-reconciler-type=none",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.apiserver_port}",
                f"--etcd-servers={etcd_url}",
                f"--cert-dir={work / 'apiserver-certs'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--authorization-mode=RBAC,Node",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--profiling=false",
            ],
            f"{self.server}/readyz",
        )
        controller_manager = Component(
            "kube-controller-manager",
            [
                str(bin_dir / "kube-controller-manager"),
                *self._component_flags("kube-controller-manager", self.controller_manager_port),
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
            ],
            f"https://127.0.0.1:{self.controller_manager_port}/healthz",
        )
        scheduler = Component(
            "kube-scheduler",
            [
                str(bin_dir / "kube-scheduler"),
                *self._component_flags("kube-scheduler", self.scheduler_port),
            ],
            f"https://127.0.0.1:{self.scheduler_port}/healthz",
        )
        kwok = Component(
            "kwok",
            [
                str(bin_dir / "kwok"),
                f"--kubeconfig={work / 'kwok.kubeconfig'}",
                f"--config={self.kwok_stages}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={'='.join(KWOK_NODE_ANNOTATION)}",
                "--node-lease-duration-seconds=40",
                "--cidr=10.244.0.0/16",
            ],
        )
        return {c.name: c for c in (etcd, apiserver, controller_manager, scheduler, kwok)}

    def _component_flags(self, name: str, port: int) -> list[str]:
        kubeconfig = self.workdir / f"{name}.kubeconfig"
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--tls-cert-file={self.pki_dir / f'{name}-serving.crt'}",
            f"--tls-private-key-file={self.pki_dir / f'{name}-serving.key'}",
            "--leader-elect=false",
        ]

    def _launch(self, component: Component) -> None:
        env = dict(os.environ)
        # kwok reads ~/.kwok/kwok.yaml when it exists: keep a user's settings out of the tests.
        env["HOME"] = str(self.workdir / "home")
        (self.workdir / "home").mkdir(exist_ok=True)
        with self.log_path(component.name).open("ab") as log_file:
            proc = subprocess.Popen(
                dying_with_parent(component.argv),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=env,
                start_new_session=True,
            )
        self.processes[component.name] = proc
        self._groups.append(proc.pid)
        log.debug("started %s", component.name, extra={"pid": proc.pid})

    def _wait_healthy(self, component: Component, timeout_s: float) -> None:
        assert component.health_url is not None
        proc = self.processes[component.name]

        def healthy() -> bool:
            if proc.poll() is not None:
                raise _Exited(component.name)
            status, _body = self._get(component.health_url or "")
            return status == 200

        try:
            wait_until(healthy, f"{component.name} at {component.health_url}", timeout_s)
        except ControlPlaneError as exc:
            raise ControlPlaneError(
                f"{component.name} did not become healthy ({exc}); "
                f"exit code {proc.poll()}; log {self.log_path(component.name)}:\n"
                f"{self.log_tail(component.name)}"
            ) from exc

    def _get(self, url: str) -> tuple[int, str]:
        context = self._ssl if url.startswith("https:") else None
        request = urllib.request.Request(url)  # noqa: S310
        try:
            with urllib.request.urlopen(request, context=context, timeout=5) as response:  # noqa: S310
                return int(response.status), response.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")


def prebuild_kube_binaries(session: pytest.Session) -> None:
    """Build the control plane's binaries before the first test that needs them runs.

    A first build takes a long while; done here, it is outside per-test timeouts and its
    progress shows on the terminal. Re-export it from a conftest as ``pytest_collection_finish``.
    """
    if not any("kube" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    capture = session.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        build_binaries(show_progress=True)


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """One control plane for the session, with two fake GPU nodes (gpu-node-0, gpu-node-1)."""
    plane = ControlPlane(tmp_path_factory.mktemp("kube"), build_binaries())
    with plane:
        for index in range(2):
            plane.add_gpu_node(f"gpu-node-{index}")
        yield plane
