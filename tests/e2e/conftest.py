"""Two simulated GPU nodes on this host, each an agent with its own cgroup subtree and GPUs.

node-a: one model server in a cgroup of its own (pause uses cgroup.freeze), on GPU 0.
node-b: two model servers sharing one cgroup (pause falls back to SIGSTOP), one on GPU 1.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backstop.demo import model_server
from backstop.simgpu import FakeNvml, FakeProcess, default_gpus, idle_unless_listed
from tests.support.alert_fixtures import alertmanager, prebuild_alertmanager, receiver
from tests.support.cgroups import scratch_cgroup
from tests.support.cluster import LocalCluster, ModelServer, cluster, wait_for

pytest_collection_finish = prebuild_alertmanager
__all__ = [
    "alertmanager",
    "cluster",
    "nodes",
    "pytest_collection_finish",
    "receiver",
    "replicas",
]


class TestCgroups:
    """A cgroup2 subtree for one test, emptied and removed at teardown."""

    __test__ = False  # a helper, not a test class

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mount = root.parent

    def make(self, relative: str) -> Path:
        path = self.root / relative
        path.mkdir(parents=True, exist_ok=True)
        return path

    def path_of(self, directory: Path) -> str:
        """The cgroup path as /proc/PID/cgroup shows it."""
        return "/" + str(directory.relative_to(self.mount))


def start_model_in_cgroup(
    local: LocalCluster, name: str, cgroup: Path, *, warm_up: bool = True
) -> ModelServer:
    """A model server whose whole tree starts inside ``cgroup``.

    ``warm_up=False`` does not wait for a first answer: a correction in force may freeze the
    server before it ever answers.
    """
    port_file = local.workdir / f"{name}.port"
    procs_file = str(cgroup / "cgroup.procs")

    def enter_cgroup() -> None:
        with open(procs_file, "w") as fh:
            fh.write("0")

    log = open(local.workdir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        model_server.command(local.workdir / name, port_file),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=enter_cgroup,  # noqa: PLW1509 - single-threaded test process
    )
    local.procs.append(proc)
    port = wait_for(lambda: int(port_file.read_text()) if port_file.exists() else None, 20, name)
    server = ModelServer(proc, port)
    if warm_up:
        wait_for(lambda: server.ask("warm up") is not None, 10, f"{name} to answer")
    return server


@dataclass
class Nodes:
    cluster: LocalCluster
    cgroups: TestCgroups
    a: ModelServer
    b1: ModelServer
    b2: ModelServer
    gpu_a: FakeNvml
    gpu_b: FakeNvml
    a_cgroup: Path


@pytest.fixture
def nodes(cluster: LocalCluster) -> Iterator[Nodes]:
    with scratch_cgroup("backstop-e2e") as root:
        yield from _two_nodes(cluster, TestCgroups(root))


@dataclass
class Replicas:
    """Two controller replicas on one PostgreSQL database, and the two nodes: node-a's agent
    knows only replica r1; node-b's agent prefers r2 and fails over to r1."""

    nodes: Nodes
    r1: str
    r2: str


@pytest.fixture
def replicas(cluster: LocalCluster, postgres_database: str) -> Iterator[Replicas]:
    cluster.store_url = postgres_database
    addresses: dict[str, str] = {}

    def start_replicas() -> None:
        addresses["r1"] = cluster.start_controller("127.0.0.1:0", "--replica-id", "r1")
        addresses["r2"] = cluster.start_controller("127.0.0.1:0", "--replica-id", "r2", name="r2")

    with scratch_cgroup("backstop-e2e") as root:
        for nodes in _two_nodes(
            cluster,
            TestCgroups(root),
            start_controllers=start_replicas,
            controller_of=lambda node_id: (
                addresses["r1"] if node_id == "node-a" else f"{addresses['r2']},{addresses['r1']}"
            ),
        ):
            yield Replicas(nodes, addresses["r1"], addresses["r2"])


def _two_nodes(
    cluster: LocalCluster,
    cgroups: TestCgroups,
    *,
    start_controllers: Callable[[], object] | None = None,
    controller_of: Callable[[str], str] = lambda node_id: "",
) -> Iterator[Nodes]:
    try:
        a_cgroup = cgroups.make("node-a/model-a")
        b_cgroup = cgroups.make("node-b/shared")
        (start_controllers or cluster.start_controller)()
        a = start_model_in_cgroup(cluster, "model-a", a_cgroup)
        b1 = start_model_in_cgroup(cluster, "model-b1", b_cgroup)
        b2 = start_model_in_cgroup(cluster, "model-b2", b_cgroup)
        gpu_a = FakeNvml(cluster.workdir / "gpu-a")
        on_a = [FakeProcess(0, a.pid, 8 * 2**30)]
        gpu_a.write(idle_unless_listed(default_gpus(2), on_a), on_a)
        gpu_b = FakeNvml(cluster.workdir / "gpu-b")
        on_b = [FakeProcess(1, b1.pid, 4 * 2**30)]
        gpu_b.write(idle_unless_listed(default_gpus(2), on_b), on_b)
        for node_id, gpu in (("node-a", gpu_a), ("node-b", gpu_b)):
            prefix = cgroups.path_of(cgroups.root / node_id)
            cluster.start_agent(
                node_id, gpu.env(), "--cgroup-prefix", prefix, controller=controller_of(node_id)
            )
        for server in (a, b1, b2):
            cluster.wait_for_workload(server.pid)
        yield Nodes(cluster, cgroups, a, b1, b2, gpu_a, gpu_b, a_cgroup)
    finally:
        cluster.stop()
