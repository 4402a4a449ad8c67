"""Workload discovery: real child processes on this machine, and a fake /proc tree for the
grouping rules, parsing edge cases and the scan schedule."""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from backstop.agent.collectors.processes import ProcessCollector, ProcessSnapshot, ProcInfo
from backstop.agent.discovery import MAX_SEARCH_BACKOFF_S, WorkloadDiscovery
from backstop.agent.fingerprint import procfs as procfs_module
from backstop.agent.fingerprint.weights import WeightsHasher
from backstop.agent.grouping import group_workloads
from backstop.agent.workload_record import (
    LABEL_BEHAVIOUR,
    LABEL_FRAMEWORK,
    LABEL_KIND,
    LABEL_NAME,
)
from backstop.core import ids
from backstop.core.models import Behaviour, GpuProcess, GpuUse, WeightsFile, Workload
from tests.agent.conftest import FakeClock
from tests.agent.fingerprint.children import Child, Spawner
from tests.agent.fingerprint.samples import (
    reference_model_hash,
    reference_sampled_sha256,
    safetensors_header,
    write_safetensors,
)

NODE = "node-a"
GPU_A = "GPU-aaaaaaaa-0000-0000-0000-000000000000"
GPU_B = "GPU-bbbbbbbb-0000-0000-0000-000000000000"
CID = "9a" * 32


def containing(workloads: list[Workload], pid: int) -> list[Workload]:
    return [w for w in workloads if pid in w.pids]


# -- real processes ------------------------------------------------------------------------

SERVER = """
import mmap, os, socket, struct, subprocess, sys
path, header, mode = sys.argv[1], sys.argv[2].encode(), sys.argv[3]
data = bytes((i * 7) % 251 for i in range(300_000))
with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(header)) + header + data)
held = open(path, "rb")
if mode == "mmap":
    mapped = mmap.mmap(held.fileno(), 0, access=mmap.ACCESS_READ)
    held.close()
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()
kid = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print(listener.getsockname()[1], kid.pid, flush=True)
for line in sys.stdin:
    if line.strip() == "delete":
        os.unlink(path)
        print("deleted", flush=True)
"""


@dataclass
class Server:
    child: Child
    port: int
    kid: int
    path: Path
    header: bytes


def start_server(spawner: Spawner, tmp_path: Path, mode: str) -> Server:
    header = safetensors_header(tensors=3)
    path = tmp_path / "model.safetensors"
    child = spawner.python(SERVER, str(path), header.decode(), mode)
    port, kid = (int(x) for x in child.read_line().split())
    return Server(child, port, kid, path, header)


def discover_once(
    discovery: WorkloadDiscovery,
    gpu: list[GpuProcess] | None = None,
    util: dict[str, int] | None = None,
) -> tuple[list[Workload], ProcessSnapshot]:
    snapshot = ProcessCollector().collect()
    return discovery.discover(snapshot, gpu or [], util), snapshot


@pytest.mark.parametrize("mode", ["mmap", "open"])
def test_a_listening_process_with_weights_is_a_serving_workload(
    spawner: Spawner, tmp_path: Path, mode: str
) -> None:
    server = start_server(spawner, tmp_path, mode)
    expected_weights = WeightsFile(
        path=str(server.path),
        format="safetensors",
        size_bytes=server.path.stat().st_size,
        header_sha256=hashlib.sha256(server.header).hexdigest(),
        sampled_sha256=reference_sampled_sha256(server.path),
    )
    discovery = WorkloadDiscovery(NODE)

    workloads, snapshot = discover_once(discovery)

    (workload,) = containing(workloads, server.child.pid)
    root = snapshot.processes[server.child.pid]
    fingerprint = workload.fingerprint
    assert workload.root_pid == server.child.pid
    assert server.kid in workload.pids
    assert workload.pids[0] == server.child.pid
    assert containing(workloads, server.kid) == [workload]
    assert fingerprint.weights == (expected_weights,)
    assert fingerprint.model_hash == reference_model_hash([expected_weights.sampled_sha256])
    assert fingerprint.listening_ports == (server.port,)
    assert fingerprint.framework == ""
    assert fingerprint.behaviour is Behaviour.SERVING
    assert fingerprint.behaviour_confidence == pytest.approx(0.8)
    assert fingerprint.gpus == ()
    assert fingerprint.exe == root.exe
    assert fingerprint.cmdline == root.cmdline  # nothing secret in it
    assert fingerprint.cgroup == root.cgroup
    assert workload.workload_id == ids.workload_id(NODE, root.pid, root.create_time)
    assert workload.node_id == NODE
    assert workload.started_at_s == root.create_time
    assert dict(workload.labels) == {
        LABEL_BEHAVIOUR: "serving",
        LABEL_KIND: "process",
        LABEL_NAME: root.name,
    }


@pytest.mark.parametrize("mode", ["mmap", "open"])
def test_deleted_weights_are_still_identified(spawner: Spawner, tmp_path: Path, mode: str) -> None:
    server = start_server(spawner, tmp_path, mode)
    sampled = reference_sampled_sha256(server.path)
    server.child.send("delete")
    assert server.child.read_line() == "deleted"
    assert not server.path.exists()

    workloads, _ = discover_once(WorkloadDiscovery(NODE))

    (workload,) = containing(workloads, server.child.pid)
    (weights,) = workload.fingerprint.weights
    assert weights.path == str(server.path)
    assert weights.sampled_sha256 == sampled
    assert weights.header_sha256 == hashlib.sha256(server.header).hexdigest()


PARENT_WITH_KID = """
import subprocess, sys
kid = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print(kid.pid, flush=True)
sys.stdin.read()
"""


def test_gpu_processes_form_one_workload_with_summed_memory(spawner: Spawner) -> None:
    child = spawner.python(PARENT_WITH_KID)
    kid = int(child.read_line())
    gpu = [
        GpuProcess(GPU_A, child.pid, 100 << 20),
        GpuProcess(GPU_A, kid, 50 << 20),
        GpuProcess(GPU_B, kid, 7 << 20),
        GpuProcess(GPU_B, 4_000_000, 1 << 20),  # a pid that does not exist: ignored
    ]

    workloads, snapshot = discover_once(WorkloadDiscovery(NODE), gpu, {GPU_A: 97, GPU_B: 90})

    (workload,) = containing(workloads, child.pid)
    assert workload.root_pid == child.pid
    assert kid in workload.pids
    assert workload.fingerprint.gpus == (GpuUse(GPU_A, 150 << 20), GpuUse(GPU_B, 7 << 20))
    assert workload.fingerprint.behaviour is Behaviour.TRAINING
    assert workload.fingerprint.listening_ports == ()
    assert workload.fingerprint.weights == ()
    assert workload.fingerprint.model_hash == ""
    assert not [w for w in workloads if 4_000_000 in w.pids]
    assert workload.labels[LABEL_NAME] == snapshot.processes[child.pid].name


def test_a_gpu_child_alone_is_its_own_workload(spawner: Spawner) -> None:
    child = spawner.python(PARENT_WITH_KID)
    kid = int(child.read_line())

    workloads, _ = discover_once(WorkloadDiscovery(NODE), [GpuProcess(GPU_A, kid, 1 << 20)])

    (workload,) = containing(workloads, kid)
    assert workload.root_pid == kid
    assert workload.pids == (kid,)
    assert not containing(workloads, child.pid)


LISTEN_ONLY = """
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print(s.getsockname()[1], flush=True)
sys.stdin.read()
"""


def test_a_process_that_only_listens_is_not_a_workload(spawner: Spawner) -> None:
    child = spawner.python(LISTEN_ONLY)
    child.read_line()

    workloads, _ = discover_once(WorkloadDiscovery(NODE))

    assert containing(workloads, child.pid) == []


def test_a_plain_process_is_not_a_workload(spawner: Spawner) -> None:
    child = spawner.python("import sys; print('ready', flush=True); sys.stdin.read()")
    child.read_line()

    workloads, _ = discover_once(WorkloadDiscovery(NODE))

    assert containing(workloads, child.pid) == []


STAGED = """
import mmap, socket, sys
path = sys.argv[1]
mapped = listener = None
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() == "map":
        with open(path, "rb") as f:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        print("mapped", flush=True)
    elif line.strip() == "listen":
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        print(listener.getsockname()[1], flush=True)
"""


def test_a_new_listener_in_a_known_process_is_found_at_once(
    spawner: Spawner, tmp_path: Path
) -> None:
    path = write_safetensors(tmp_path / "m.safetensors", safetensors_header(), b"\1" * 5000)
    child = spawner.python(STAGED, str(path))
    child.read_line()
    child.send("map")
    assert child.read_line() == "mapped"
    discovery = WorkloadDiscovery(NODE, clock=FakeClock())
    first, _ = discover_once(discovery)
    assert containing(first, child.pid) == []

    child.send("listen")
    port = int(child.read_line())
    second, _ = discover_once(discovery)  # the clock has not moved: no periodic rescan

    (workload,) = containing(second, child.pid)
    assert workload.fingerprint.listening_ports == (port,)
    assert [w.path for w in workload.fingerprint.weights] == [str(path)]


def test_weights_opened_later_by_a_listener_show_at_the_next_rescan(
    spawner: Spawner, tmp_path: Path
) -> None:
    path = write_safetensors(tmp_path / "m.safetensors", safetensors_header(), b"\2" * 5000)
    child = spawner.python(STAGED, str(path))
    child.read_line()
    child.send("listen")
    child.read_line()
    clock = FakeClock()
    discovery = WorkloadDiscovery(NODE, rescan_interval_s=30, clock=clock)
    assert containing(discover_once(discovery)[0], child.pid) == []

    child.send("map")
    assert child.read_line() == "mapped"
    cached, _ = discover_once(discovery)
    clock.now += 30
    rescanned, _ = discover_once(discovery)

    assert containing(cached, child.pid) == []
    (workload,) = containing(rescanned, child.pid)
    assert workload.fingerprint.behaviour is Behaviour.SERVING


SECRET_SERVER = """
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print("ready", flush=True)
sys.stdin.read()
"""


def test_the_command_line_is_redacted(spawner: Spawner) -> None:
    child = spawner.python(SECRET_SERVER, "--api-key", "very-secret-key", "--port", "1")
    child.read_line()

    workloads, _ = discover_once(WorkloadDiscovery(NODE), [GpuProcess(GPU_A, child.pid, 1)])

    (workload,) = containing(workloads, child.pid)
    assert workload.fingerprint.cmdline[-4:] == ("--api-key", "***", "--port", "1")
    assert "very-secret-key" not in " ".join(workload.fingerprint.cmdline)


# -- fake /proc tree -----------------------------------------------------------------------

TCP_HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt\n"


@dataclass
class FakeProc:
    """A fake /proc tree plus the matching process snapshot."""

    root: Path
    infos: dict[int, ProcInfo] = field(default_factory=dict)
    netns: dict[int, str] = field(default_factory=dict)
    listen: dict[str, list[str]] = field(default_factory=dict)
    maps: dict[int, list[str]] = field(default_factory=dict)

    def add(
        self,
        pid: int,
        ppid: int = 1,
        *,
        name: str = "python3",
        cmdline: tuple[str, ...] = ("python3", "serve.py"),
        container_id: str = "",
        create_time: float | None = None,
        netns: str = "net:[1]",
        dir_exists: bool = True,
    ) -> None:
        self.infos[pid] = ProcInfo(
            pid=pid,
            ppid=ppid,
            name=name,
            exe="/usr/bin/python3.11",
            cmdline=cmdline,
            create_time=float(pid) if create_time is None else create_time,
            status="sleeping",
            uid=1000,
            cgroup=f"/docker/{container_id}" if container_id else "/user.slice",
            container_id=container_id,
        )
        if not dir_exists:
            return
        (self.root / str(pid) / "fd").mkdir(parents=True)
        (self.root / str(pid) / "ns").mkdir()
        (self.root / str(pid) / "ns" / "net").symlink_to(netns)
        self.netns[pid] = netns
        self.maps[pid] = []
        self.write()

    def fd(self, pid: int, fd: int, target: str) -> None:
        (self.root / str(pid) / "fd" / str(fd)).symlink_to(target)

    def listen_on(self, pid: int, inode: int, port: int, *, ipv6: bool = False) -> None:
        self.fd(pid, 100 + len(os.listdir(self.root / str(pid) / "fd")), f"socket:[{inode}]")
        self.add_listen_entry(self.netns[pid], inode, port, ipv6=ipv6)

    def add_listen_entry(self, netns: str, inode: int, port: int, *, ipv6: bool = False) -> None:
        address = "0" * 24 + "01000000" if ipv6 else "0100007F"
        zeros = "0" * len(address)
        line = (
            f"   0: {address}:{port:04X} {zeros}:0000 0A 00000000:00000000 00:00000000 "
            f"00000000  1000        0 {inode} 1 0000000000000000 100 0 0 10 0"
        )
        self.listen.setdefault(f"{netns}/{'tcp6' if ipv6 else 'tcp'}", []).append(line)
        self.write()

    def map_file(
        self, pid: int, real: Path, *, shown: str | None = None, via: str = "map_files"
    ) -> None:
        st = real.stat()
        start = 0x7F0000000000 + 0x100000 * len(self.maps[pid])
        address = f"{start:x}-{start + 0x100000:x}"
        path = shown or str(real)
        dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}"
        self.maps[pid].append(f"{address} r--s 00000000 {dev} {st.st_ino} {path}")
        if via == "map_files":
            (self.root / str(pid) / "map_files").mkdir(exist_ok=True)
            (self.root / str(pid) / "map_files" / address).symlink_to(real)
        elif via == "root" and not (self.root / str(pid) / "root").exists():
            (self.root / str(pid) / "root").symlink_to("/")
        self.write()

    def map_library(self, pid: int, path: str) -> None:
        start = 0x7E0000000000 + 0x100000 * len(self.maps[pid])
        self.maps[pid].append(f"{start:x}-{start + 0x1000:x} r-xp 00000000 fd:01 4242 {path}")
        self.write()

    def write(self) -> None:
        for pid, netns in self.netns.items():
            net = self.root / str(pid) / "net"
            net.mkdir(exist_ok=True)
            for table in ("tcp", "tcp6"):
                lines = self.listen.get(f"{netns}/{table}", [])
                (net / table).write_text(TCP_HEADER + "".join(line + "\n" for line in lines))
            (self.root / str(pid) / "maps").write_text(
                "".join(line + "\n" for line in self.maps[pid])
            )

    def snapshot(self) -> ProcessSnapshot:
        return ProcessSnapshot(dict(self.infos))


@pytest.fixture
def fake(tmp_path: Path) -> FakeProc:
    root = tmp_path / "proc"
    root.mkdir()
    proc = FakeProc(root)
    proc.add(1, 0, name="init", cmdline=("/sbin/init",))
    return proc


@pytest.fixture
def weights_file(tmp_path: Path) -> Path:
    return write_safetensors(tmp_path / "model.safetensors", safetensors_header(), b"\3" * 9000)


def discovery_for(fake: FakeProc, **kwargs: object) -> WorkloadDiscovery:
    return WorkloadDiscovery(NODE, proc_root=fake.root, **kwargs)  # type: ignore[arg-type]


def test_processes_of_one_container_form_one_workload(fake: FakeProc) -> None:
    fake.add(5, name="containerd-shim", cmdline=("containerd-shim",))
    fake.add(10, 5, name="tini", cmdline=("tini", "--", "serve"), container_id=CID)
    fake.add(11, 10, container_id=CID)
    fake.add(12, 5, name="bash", cmdline=("bash",), container_id=CID)  # docker exec
    fake.add(13, 12, name="top", cmdline=("top",), container_id=CID)
    fake.add(20, 1)  # a host process on a GPU
    gpu = [GpuProcess(GPU_A, 11, 10), GpuProcess(GPU_A, 20, 5)]

    workloads = discovery_for(fake).discover(fake.snapshot(), gpu)

    container, host = workloads
    assert container.root_pid == 10
    assert container.pids == (10, 11, 12, 13)
    assert container.workload_id == ids.workload_id(NODE, 10, 10.0, CID)
    assert container.fingerprint.container_id == CID
    assert container.fingerprint.cmdline == ("tini", "--", "serve")
    assert container.labels[LABEL_KIND] == "container"
    assert container.labels[LABEL_NAME] == "tini"
    assert container.fingerprint.gpus == (GpuUse(GPU_A, 10),)
    assert host.root_pid == 20
    assert host.labels[LABEL_KIND] == "process"
    assert host.fingerprint.gpus == (GpuUse(GPU_A, 5),)


def test_a_container_root_is_its_oldest_top_process(fake: FakeProc) -> None:
    fake.add(30, 1, container_id=CID, create_time=500.0)  # exec'd later
    fake.add(31, 1, container_id=CID, create_time=100.0)  # the container's init

    (workload,) = discovery_for(fake).discover(fake.snapshot(), [GpuProcess(GPU_A, 30, 1)])

    assert workload.root_pid == 31
    assert workload.pids == (31, 30)
    assert workload.started_at_s == 100.0


def test_detected_processes_merge_into_their_topmost_detected_ancestor(
    fake: FakeProc, weights_file: Path
) -> None:
    fake.add(40, 1)
    fake.add(41, 40)
    fake.add(42, 41)
    fake.add(43, 42)
    fake.listen_on(42, inode=7001, port=8000)
    fake.fd(42, 5, str(weights_file))
    gpu = [GpuProcess(GPU_A, 41, 1), GpuProcess(GPU_B, 43, 2)]

    workloads = discovery_for(fake).discover(fake.snapshot(), gpu)

    (workload,) = workloads
    assert workload.root_pid == 41
    assert workload.pids == (41, 42, 43)
    assert workload.fingerprint.listening_ports == (8000,)
    assert [w.path for w in workload.fingerprint.weights] == [str(weights_file)]
    assert workload.fingerprint.gpus == (GpuUse(GPU_A, 1), GpuUse(GPU_B, 2))


def test_listener_and_weights_must_be_the_same_process(fake: FakeProc, weights_file: Path) -> None:
    """An sshd-like listener must not become the root of a model its descendant loads."""
    fake.add(50, 1, name="sshd", cmdline=("sshd: /usr/sbin/sshd -D",))
    fake.add(51, 50, name="bash", cmdline=("-bash",))
    fake.add(52, 51)
    fake.listen_on(50, inode=7002, port=22)
    fake.map_file(52, weights_file)

    assert discovery_for(fake).discover(fake.snapshot(), []) == []

    fake.listen_on(52, inode=7008, port=9000, ipv6=True)
    (workload,) = discovery_for(fake).discover(fake.snapshot(), [])

    assert workload.root_pid == 52
    assert workload.pids == (52,)
    assert workload.fingerprint.listening_ports == (9000,)
    assert workload.fingerprint.behaviour is Behaviour.SERVING
    assert workload.fingerprint.weights[0].path == str(weights_file)


def test_a_listener_in_another_namespace_is_read_from_that_namespace(
    fake: FakeProc, weights_file: Path
) -> None:
    fake.add(60, 1, netns="net:[2]")
    fake.listen_on(60, inode=7003, port=8443)
    fake.fd(60, 5, str(weights_file))

    (workload,) = discovery_for(fake).discover(fake.snapshot(), [])

    assert workload.root_pid == 60
    assert workload.fingerprint.listening_ports == (8443,)


def test_unreadable_weights_and_vanished_processes_are_skipped(
    fake: FakeProc, weights_file: Path
) -> None:
    fake.add(70, 1)
    fake.listen_on(70, inode=7004, port=8000)
    fake.fd(70, 5, "/gone/model.safetensors (deleted)")  # cannot be opened through a fake link
    fake.fd(70, 6, "/models/readme.txt")
    fake.add(71, 1, dir_exists=False)  # in the snapshot, gone from /proc
    fake.add(72, 71, dir_exists=False)

    workloads = discovery_for(fake).discover(fake.snapshot(), [GpuProcess(GPU_A, 71, 3)])

    (workload,) = workloads
    assert workload.root_pid == 71
    assert workload.pids == (71, 72)
    assert workload.fingerprint.weights == ()
    assert workload.fingerprint.gpus == (GpuUse(GPU_A, 3),)


def test_mapped_weights_are_read_through_the_process_root_only_when_the_inode_matches(
    fake: FakeProc, weights_file: Path, tmp_path: Path
) -> None:
    other = write_safetensors(tmp_path / "other.safetensors", safetensors_header(), b"\4" * 10)
    fake.add(80, 1)
    fake.map_file(80, weights_file, via="root")
    fake.add(81, 1)
    # The mapping says "other.safetensors" but the path now leads to a different file
    # (e.g. a symlink planted by the workload): it must not be read.
    fake.map_file(81, other, shown=str(weights_file), via="root")
    hasher = WeightsHasher()
    gpu = [GpuProcess(GPU_A, 80, 1), GpuProcess(GPU_A, 81, 1)]

    first, second = discovery_for(fake, hasher=hasher).discover(fake.snapshot(), gpu)

    assert [w.path for w in first.fingerprint.weights] == [str(weights_file)]
    assert second.fingerprint.weights == ()
    assert hasher.files_hashed == 1


def test_framework_comes_from_mapped_libraries(fake: FakeProc) -> None:
    fake.add(90, 1)
    fake.map_library(90, "/venv/lib/python3.11/site-packages/torch/lib/libtorch_cuda.so")

    (workload,) = discovery_for(fake).discover(fake.snapshot(), [GpuProcess(GPU_A, 90, 1)])

    assert workload.fingerprint.framework == "torch"
    assert workload.labels[LABEL_FRAMEWORK] == "torch"


def test_framework_comes_from_the_command_line_of_any_tree_member(fake: FakeProc) -> None:
    fake.add(95, 1, name="sh", cmdline=("sh", "-c", "start"))
    fake.add(96, 95, cmdline=("python3", "-m", "vllm.entrypoints.openai.api_server"))

    (workload,) = discovery_for(fake).discover(fake.snapshot(), [GpuProcess(GPU_A, 95, 1)])

    assert workload.fingerprint.framework == "vllm"
    assert workload.fingerprint.behaviour is Behaviour.SERVING


def test_gpu_utilisation_is_smoothed_across_samples(fake: FakeProc) -> None:
    fake.add(100, 1)
    discovery = discovery_for(fake)
    gpu = [GpuProcess(GPU_A, 100, 1)]

    busy = discovery.discover(fake.snapshot(), gpu, {GPU_A: 100})[0]
    dip = discovery.discover(fake.snapshot(), gpu, {GPU_A: 60})[0]
    idle = [discovery.discover(fake.snapshot(), gpu, {GPU_A: 0})[0] for _ in range(5)][-1]

    assert busy.fingerprint.behaviour is Behaviour.TRAINING
    assert dip.fingerprint.behaviour is Behaviour.TRAINING  # one quieter sample
    assert idle.fingerprint.behaviour is Behaviour.OTHER


def test_nothing_is_rescanned_before_the_interval(fake: FakeProc, weights_file: Path) -> None:
    fake.add(110, 1)
    fake.add(111, 1)
    fake.listen_on(110, inode=7005, port=8000)
    fake.fd(110, 5, str(weights_file))
    clock = FakeClock()
    discovery = discovery_for(fake, rescan_interval_s=30, clock=clock)
    discovery.discover(fake.snapshot(), [])
    after_first = discovery.stats

    discovery.discover(fake.snapshot(), [])
    steady = discovery.stats
    clock.now += 30
    discovery.discover(fake.snapshot(), [])
    rescanned = discovery.stats

    assert after_first.fd_scans > 0
    assert after_first.maps_scans > 0
    assert (steady.fd_scans, steady.maps_scans) == (after_first.fd_scans, after_first.maps_scans)
    assert steady.netns_reads == after_first.netns_reads  # per process, once
    assert rescanned.maps_scans == steady.maps_scans + 1  # the workload's one process
    assert rescanned.fd_scans == steady.fd_scans + 1


def test_a_listener_nobody_holds_is_searched_with_back_off(fake: FakeProc) -> None:
    for pid in range(120, 125):
        fake.add(pid, 1)
    fake.add_listen_entry("net:[1]", inode=9999, port=111)  # e.g. a kernel socket
    clock = FakeClock()
    discovery = discovery_for(fake, rescan_interval_s=30, clock=clock)

    discovery.discover(fake.snapshot(), [])
    first = discovery.stats.fd_scans
    discovery.discover(fake.snapshot(), [])
    backing_off = discovery.stats.fd_scans
    searched = len(fake.infos)
    fake.add(125, 1)
    clock.now += 30
    discovery.discover(fake.snapshot(), [])
    retried = discovery.stats.fd_scans
    clock.now += 30  # the second retry waits twice as long
    discovery.discover(fake.snapshot(), [])
    still_backing_off = discovery.stats.fd_scans
    per_retry = []
    for _ in range(6):  # up to the longest back-off, then a full search
        clock.now += MAX_SEARCH_BACKOFF_S
        before = discovery.stats.fd_scans
        discovery.discover(fake.snapshot(), [])
        per_retry.append(discovery.stats.fd_scans - before)

    assert first == searched
    assert backing_off == first
    assert retried == first + 1  # only the process new since the search
    assert still_backing_off == retried
    assert len(fake.infos) in per_retry  # a socket can be handed to an old process
    assert per_retry.count(0) >= 3


def test_a_new_listener_is_searched_among_its_namespace_only(
    fake: FakeProc, monkeypatch: pytest.MonkeyPatch
) -> None:
    for pid in range(130, 134):
        fake.add(pid, 1, netns="net:[3]")
    fake.add(134, 1, netns="net:[4]")
    discovery = discovery_for(fake, clock=FakeClock())
    discovery.discover(fake.snapshot(), [])
    scanned: list[int] = []
    real = procfs_module.read_fd_links

    def recording(proc_root: Path, pid: int) -> list[tuple[int, str]] | None:
        scanned.append(pid)
        return real(proc_root, pid)

    monkeypatch.setattr(procfs_module, "read_fd_links", recording)
    fake.listen_on(134, inode=7006, port=8000)
    discovery.discover(fake.snapshot(), [])

    assert set(scanned) == {134}


def test_state_of_a_reused_pid_is_not_carried_over(fake: FakeProc, weights_file: Path) -> None:
    fake.add(140, 1)
    fake.listen_on(140, inode=7007, port=8000)
    fake.fd(140, 5, str(weights_file))
    discovery = discovery_for(fake, clock=FakeClock())
    assert len(discovery.discover(fake.snapshot(), [])) == 1

    # Same pid, new incarnation holding the same listening socket but no weights: the
    # weights remembered for the old incarnation must not make it a workload.
    (fake.root / "140" / "fd" / "5").unlink()
    fake.infos[140] = ProcInfo(
        140, 1, "sleep", "/bin/sleep", ("sleep",), 999.0, "sleeping", 0, "", ""
    )

    assert discovery.discover(fake.snapshot(), []) == []


def test_group_workloads_ignores_pids_missing_from_the_snapshot(fake: FakeProc) -> None:
    fake.add(150, 1)

    groups = group_workloads(fake.snapshot(), [150, 151])

    assert [(g.root_pid, g.pids) for g in groups] == [(150, (150,))]


def test_discovery_runs_on_this_machine_without_errors() -> None:
    snapshot = ProcessCollector().collect()
    discovery = WorkloadDiscovery(NODE)
    try:
        workloads = discovery.discover(snapshot, [GpuProcess(GPU_A, os.getpid(), 1)])
    finally:
        discovery.close()

    (mine,) = containing(workloads, os.getpid())
    assert mine.fingerprint.exe == os.path.realpath(sys.executable)
