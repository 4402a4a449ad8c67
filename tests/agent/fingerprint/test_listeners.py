"""Listening sockets per network namespace: netlink sock_diag, setns, /proc fallback."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from backstop.agent.fingerprint import listeners as listeners_module
from backstop.agent.fingerprint.listeners import ListenSocketReader
from tests.agent.fingerprint.children import Child, Spawner

LISTENER = """
import os, socket, sys
s4 = socket.socket()
s4.bind(("127.0.0.1", 0))
s4.listen()
s6 = socket.socket(socket.AF_INET6)
s6.bind(("::1", 0))
s6.listen()
connected = socket.create_connection(s4.getsockname())  # an established pair: not listed
print(s4.getsockname()[1], s6.getsockname()[1],
      os.fstat(s4.fileno()).st_ino, os.fstat(s6.fileno()).st_ino, flush=True)
sys.stdin.read()
"""


@pytest.fixture
def no_proc_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the reader falls back to /proc/PID/net/tcp."""

    def refuse(proc_root: Path, pid: int) -> dict[int, int] | None:
        raise AssertionError("fell back to /proc/PID/net/tcp")

    monkeypatch.setattr(listeners_module, "read_listen_sockets", refuse)


def start_listener(spawner: Spawner, *, own_netns: bool = False) -> tuple[Child, list[int]]:
    if own_netns:
        child = spawner.command(
            [
                "unshare",
                "--net",
                "sh",
                "-c",
                'ip link set lo up && exec "$0" -c "$1"',
                sys.executable,
                LISTENER,
            ]
        )
    else:
        child = spawner.python(LISTENER)
    return child, [int(x) for x in child.read_line().split()]


def netns_of(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/net")


@pytest.mark.usefixtures("no_proc_fallback")
def test_netlink_lists_ipv4_and_ipv6_listeners(spawner: Spawner) -> None:
    child, (port4, port6, inode4, inode6) = start_listener(spawner)
    reader = ListenSocketReader()
    try:
        found = reader.listening(child.pid, netns_of(child.pid))
    finally:
        reader.close()

    assert found is not None
    assert found[inode4] == port4
    assert found[inode6] == port6


def test_proc_files_give_the_same_answer(spawner: Spawner) -> None:
    child, (port4, port6, inode4, inode6) = start_listener(spawner)
    netlink = ListenSocketReader()
    procfs = ListenSocketReader(netlink=False)
    try:
        via_netlink = netlink.listening(child.pid, netns_of(child.pid))
        via_proc = procfs.listening(child.pid, netns_of(child.pid))
    finally:
        netlink.close()

    assert via_proc is not None
    assert via_netlink is not None
    assert {inode4: port4, inode6: port6}.items() <= via_proc.items()
    # Sockets may come and go between the two reads (other tests run on this machine);
    # ours are in both and both sources agree on everything they both list.
    common = via_proc.keys() & via_netlink.keys()
    assert {inode4, inode6} <= common
    assert all(via_proc[i] == via_netlink[i] for i in common)


@pytest.mark.usefixtures("no_proc_fallback")
def test_another_network_namespace_is_entered_with_setns(spawner: Spawner) -> None:
    child, (port4, port6, inode4, inode6) = start_listener(spawner, own_netns=True)
    netns = netns_of(child.pid)
    assert netns != os.readlink("/proc/self/ns/net")
    reader = ListenSocketReader()
    try:
        inside = reader.listening(child.pid, netns)
        outside = reader.listening(os.getpid(), os.readlink("/proc/self/ns/net"))
    finally:
        reader.close()

    assert inside == {inode4: port4, inode6: port6}
    assert outside is not None
    assert inode4 not in outside
    assert inode6 not in outside


def test_sockets_of_namespaces_no_longer_seen_are_closed(spawner: Spawner) -> None:
    child, _ = start_listener(spawner, own_netns=True)
    reader = ListenSocketReader()
    before = len(os.listdir("/proc/self/fd"))
    try:
        assert reader.listening(child.pid, netns_of(child.pid)) is not None
        opened = len(os.listdir("/proc/self/fd"))
        reader.retain(set())
        after = len(os.listdir("/proc/self/fd"))
    finally:
        reader.close()

    assert opened == before + 1
    assert after == before


def test_a_fake_proc_tree_falls_back_to_its_tcp_files(tmp_path: Path) -> None:
    pid_dir = tmp_path / "42"
    (pid_dir / "ns").mkdir(parents=True)
    (pid_dir / "ns" / "net").symlink_to("net:[1]")
    (pid_dir / "net").mkdir()
    (pid_dir / "net" / "tcp").write_text(
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"
        "   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000"
        "        0 5001 1 0000000000000000 100 0 0 10 0\n"
    )
    reader = ListenSocketReader(tmp_path)

    assert reader.listening(42, "net:[1]") == {5001: 8000}
    assert reader.listening(43, "net:[2]") is None  # vanished: nothing to read
