"""Per-workload network traffic: a workload in a network namespace of its own (made here, with
a veth pair on this test's own addresses) counted on its interfaces; one in the host's
namespace counted on its TCP sockets through sock_diag; rates, counters that went back, the
interval and what is said when nothing can be read."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from backstop.agent.collectors.sock_diag import SockDiagUnavailable, tcp_bytes_by_inode
from backstop.agent.network_use import NetworkTracker, parse_net_dev
from backstop.core.models import Fingerprint, Workload
from backstop.core.network import SOURCE_NETNS, SOURCE_SOCKETS

SENT = 3_000_000
RECEIVED = 1_000_000

CLIENT = """
import socket, sys
host, port, sent, received = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
sys.stdin.readline()
conn = socket.create_connection((host, port), timeout=10)
conn.sendall(b"x" * sent)
got = 0
while got < received:
    got += len(conn.recv(65536))
print("done", flush=True)
sys.stdin.readline()
"""


def workload(pid: int) -> Workload:
    return Workload(
        workload_id=f"wl-{pid}",
        node_id="node",
        root_pid=pid,
        pids=(pid,),
        fingerprint=Fingerprint(),
    )


class Peer:
    """A TCP server in this process that reads what a client sends, then answers ``RECEIVED``."""

    def __init__(self, host: str) -> None:
        self.listener = socket.create_server((host, 0))
        self.port = self.listener.getsockname()[1]
        self.listener.settimeout(10)

    def serve_one(self) -> int:
        conn, _ = self.listener.accept()
        with conn:
            got = 0
            while got < SENT:
                got += len(conn.recv(65536))
            conn.sendall(b"y" * RECEIVED)
            return got


@dataclass
class Client:
    proc: subprocess.Popen[str]

    def send(self, peer: Peer) -> None:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        assert peer.serve_one() == SENT
        assert self.proc.stdout.readline().strip() == "done"


def start_client(prefix: list[str], host: str, port: int) -> Client:
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-c", CLIENT, host, str(port), str(SENT), str(RECEIVED)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    return Client(proc)


def stop(client: Client) -> None:
    client.proc.kill()
    client.proc.wait(10)


@pytest.fixture
def veth_namespace() -> Iterator[tuple[str, str, str]]:
    """A network namespace joined to this one by a veth pair: (name, host address, its address)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("making a network namespace needs root and iproute2's ip")
    tag = f"{os.getpid() % 100000}"
    name, host_if, ns_if = f"bstest{tag}", f"bsv{tag}a", f"bsv{tag}b"
    octet = os.getpid() % 250 + 1
    host_ip, ns_ip = f"10.253.{octet}.1", f"10.253.{octet}.2"
    steps = [
        ["ip", "netns", "add", name],
        ["ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if],
        ["ip", "link", "set", ns_if, "netns", name],
        ["ip", "addr", "add", f"{host_ip}/30", "dev", host_if],
        ["ip", "link", "set", host_if, "up"],
        ["ip", "-n", name, "addr", "add", f"{ns_ip}/30", "dev", ns_if],
        ["ip", "-n", name, "link", "set", ns_if, "up"],
        ["ip", "-n", name, "link", "set", "lo", "up"],
    ]
    try:
        for step in steps:
            result = subprocess.run(step, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                pytest.skip(f"the kernel refused {' '.join(step)}: {result.stderr.strip()}")
        yield name, host_ip, ns_ip
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def test_a_workload_in_its_own_namespace_is_counted_on_its_interfaces(
    veth_namespace: tuple[str, str, str],
) -> None:
    name, host_ip, _ = veth_namespace
    peer = Peer(host_ip)
    client = start_client(["ip", "netns", "exec", name], host_ip, peer.port)
    try:
        tracker = NetworkTracker(interval_s=0)
        wl = workload(client.proc.pid)
        for _ in range(50):  # until the client runs inside the namespace (ip exec's it there)
            (before,) = tracker.annotate([wl], time.time())
            if before.network is not None and before.network.source == SOURCE_NETNS:
                break
            time.sleep(0.1)
        first = before.network
        assert first is not None
        assert first.source == SOURCE_NETNS, first
        assert first.egress_bytes is not None
        assert first.ingress_bytes is not None
        assert first.egress_bytes_per_s is None  # no earlier reading, no rate

        client.send(peer)
        (after,) = tracker.annotate([wl], time.time())
        net = after.network
        assert net is not None
        assert net.source == SOURCE_NETNS
        assert net.egress_bytes is not None
        assert net.ingress_bytes is not None
        assert net.egress_bytes - first.egress_bytes == pytest.approx(SENT, rel=0.10)
        assert net.ingress_bytes - first.ingress_bytes == pytest.approx(RECEIVED, rel=0.10)
        assert net.egress_bytes_per_s is not None
        assert net.egress_bytes_per_s > 0
        assert net.ingress_bytes_per_s is not None
        assert net.ingress_bytes_per_s > 0
    finally:
        stop(client)
        peer.listener.close()


def test_a_workload_in_the_host_namespace_is_counted_on_its_tcp_sockets() -> None:
    try:
        tcp_bytes_by_inode()
    except SockDiagUnavailable as exc:
        pytest.skip(f"this kernel gives no per-socket counters: {exc}")
    peer = Peer("127.0.0.1")
    client = start_client([], "127.0.0.1", peer.port)
    try:
        tracker = NetworkTracker(interval_s=0)
        client.send(peer)
        (seen,) = tracker.annotate([workload(client.proc.pid)], time.time())
        net = seen.network
        assert net is not None
        assert net.source == SOURCE_SOCKETS, net
        assert net.egress_bytes == pytest.approx(SENT, rel=0.10)
        assert net.ingress_bytes == pytest.approx(RECEIVED, rel=0.10)
        assert net.unavailable == ""
    finally:
        stop(client)
        peer.listener.close()


@pytest.fixture
def sleeper() -> Iterator[int]:
    """A child holding one TCP socket, whose inode the fake dumps below report on."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import socket, time; s = socket.socket(); time.sleep(60)"]
    )
    try:
        for _ in range(100):
            if any(
                os.readlink(f"/proc/{proc.pid}/fd/{fd}").startswith("socket:")
                for fd in os.listdir(f"/proc/{proc.pid}/fd")
            ):
                break
            time.sleep(0.05)
        yield proc.pid
    finally:
        proc.kill()
        proc.wait(10)


def socket_inode(pid: int) -> int:
    for fd in os.listdir(f"/proc/{pid}/fd"):
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
        if target.startswith("socket:["):
            return int(target[8:-1])
    raise AssertionError("no socket")


def test_rates_come_from_deltas_and_a_count_that_went_back_gives_none(sleeper: int) -> None:
    inode = socket_inode(sleeper)
    counts = iter([(1000, 500), (3000, 1500), (400, 1500)])
    tracker = NetworkTracker(interval_s=0, socket_dump=lambda: {inode: next(counts)})
    wl = workload(sleeper)

    (first,) = tracker.annotate([wl], 100.0)
    (second,) = tracker.annotate([wl], 102.0)
    (third,) = tracker.annotate([wl], 104.0)

    assert first.network is not None
    assert second.network is not None
    assert third.network is not None
    assert (first.network.egress_bytes, first.network.egress_bytes_per_s) == (1000, None)
    assert second.network.egress_bytes_per_s == 1000.0
    assert second.network.ingress_bytes_per_s == 500.0
    assert third.network.egress_bytes == 400
    assert third.network.egress_bytes_per_s is None  # went back: a connection closed
    assert third.network.ingress_bytes_per_s == 0.0


def test_a_workload_is_read_at_most_once_per_interval(sleeper: int) -> None:
    tracker = NetworkTracker(interval_s=5, socket_dump=dict)
    wl = workload(sleeper)
    for at in (100.0, 101.0, 104.9):
        (seen,) = tracker.annotate([wl], at)
        assert seen.network is not None
        assert seen.network.sampled_at_s == 100.0
    tracker.annotate([wl], 105.0)
    assert tracker.reads == 2


def test_without_socket_counters_it_says_unavailable_not_zero(sleeper: int) -> None:
    def refused() -> dict[int, tuple[int, int]]:
        raise SockDiagUnavailable("the kernel refused the dump: Operation not permitted")

    (seen,) = NetworkTracker(socket_dump=refused).annotate([workload(sleeper)], 100.0)
    net = seen.network
    assert net is not None
    assert (net.source, net.egress_bytes, net.ingress_bytes) == ("", None, None)
    assert "refused" in net.unavailable


def test_a_workload_that_is_gone_is_unavailable() -> None:
    gone = Workload(
        workload_id="wl-gone", node_id="node", root_pid=2**22 + 7, pids=(2**22 + 7,),
        fingerprint=Fingerprint(),
    )  # fmt: skip
    (seen,) = NetworkTracker(socket_dump=dict).annotate([gone], 100.0)
    assert seen.network is not None
    assert seen.network.unavailable
    assert seen.network.egress_bytes is None


def test_net_dev_sums_every_interface_but_loopback() -> None:
    text = (
        "Inter-|   Receive                            |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets\n"
        "    lo: 9999 1 0 0 0 0 0 0 9999 1 0 0 0 0 0 0\n"
        "  eth0: 1000 10 0 0 0 0 0 0 200 2 0 0 0 0 0 0\n"
        "  eth1: 30 1 0 0 0 0 0 0 4 1 0 0 0 0 0 0\n"
    )
    assert parse_net_dev(text) == (204, 1030)
