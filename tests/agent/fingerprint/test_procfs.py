"""Parsing of /proc/PID/net/tcp[6], fd links and maps, against a fake /proc tree."""

from __future__ import annotations

import os
from pathlib import Path

from backstop.agent.fingerprint.procfs import (
    parse_maps,
    parse_net_tcp,
    read_fd_links,
    read_listen_sockets,
    read_maps,
    read_netns,
    socket_inode,
)

TCP_HEADER = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
    "timeout inode\n"
)
TCP = TCP_HEADER + (
    # LISTEN on 127.0.0.1:8000
    "   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000"
    "        0 5001 1 0000000000000000 100 0 0 10 0\n"
    # ESTABLISHED connection: not a listener
    "   1: 0100007F:1F40 0100007F:D3B2 01 00000000:00000000 00:00000000 00000000  1000"
    "        0 5002 1 0000000000000000 20 4 30 10 -1\n"
    # LISTEN with inode 0 (a socket being torn down): ignored
    "   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0"
    "        0 0 1 0000000000000000 100 0 0 10 0\n"
    # TIME_WAIT
    "   3: 0100007F:1F40 0100007F:D3B4 06 00000000:00000000 03:00000F6D 00000000     0"
    "        0 0 3 0000000000000000\n"
    "garbage line\n"
)
TCP6 = (
    "  sl  local_address                         remote_address                        st "
    "tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    # LISTEN on [::]:8080
    "   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A "
    "00000000:00000000 00:00000000 00000000     0        0 6001 1 0000000000000000 100 0 0 10 0\n"
    # LISTEN on [::1]:9090
    "   1: 00000000000000000000000001000000:2382 00000000000000000000000000000000:0000 0A "
    "00000000:00000000 00:00000000 00000000     0        0 6002 1 0000000000000000 100 0 0 10 0\n"
)

MAPS = (
    "5581a2b3c000-5581a2b3e000 r--p 00000000 fd:01 1311 /usr/bin/python3.11\n"
    "5581a2b3e000-5581a2b40000 r-xp 00002000 fd:01 1311 /usr/bin/python3.11\n"
    "7f0000000000-7f0000100000 r--s 00000000 103:02 77 /models/llama 3/model.safetensors\n"
    "7f0000200000-7f0000300000 r--s 00000000 00:2a 88 /models/old.gguf (deleted)\n"
    "7f0000400000-7f0000401000 rw-p 00000000 00:00 0 \n"
    "7f0000500000-7f0000501000 rw-p 00000000 00:00 0 [heap]\n"
    "7f0000600000-7f0000601000 r--p 00000000 00:05 0 /dev/zero\n"
    "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]\n"
)


def test_listen_sockets_ipv4() -> None:
    assert parse_net_tcp(TCP) == {5001: 8000}


def test_listen_sockets_ipv6() -> None:
    assert parse_net_tcp(TCP6) == {6001: 8080, 6002: 9090}


def test_header_only_and_empty_tables() -> None:
    assert parse_net_tcp(TCP_HEADER) == {}
    assert parse_net_tcp("") == {}


def test_read_listen_sockets_merges_both_tables(tmp_path: Path) -> None:
    net = tmp_path / "42" / "net"
    net.mkdir(parents=True)
    (net / "tcp").write_text(TCP)
    (net / "tcp6").write_text(TCP6)

    assert read_listen_sockets(tmp_path, 42) == {5001: 8000, 6001: 8080, 6002: 9090}


def test_read_listen_sockets_with_ipv6_only_or_nothing(tmp_path: Path) -> None:
    net = tmp_path / "42" / "net"
    net.mkdir(parents=True)
    (net / "tcp6").write_text(TCP6)

    assert read_listen_sockets(tmp_path, 42) == {6001: 8080, 6002: 9090}
    assert read_listen_sockets(tmp_path, 43) is None  # vanished


def test_maps_keeps_one_entry_per_file_and_marks_deleted() -> None:
    files = parse_maps(MAPS)

    assert [f.path for f in files] == [
        "/usr/bin/python3.11",
        "/models/llama 3/model.safetensors",
        "/models/old.gguf",
    ]
    by_path = {f.path: f for f in files}
    model = by_path["/models/llama 3/model.safetensors"]
    assert model.address_range == "7f0000000000-7f0000100000"
    assert model.inode == 77
    assert model.device == os.makedev(0x103, 0x02)
    assert not model.deleted
    assert by_path["/models/old.gguf"].deleted
    assert by_path["/usr/bin/python3.11"].address_range == "5581a2b3c000-5581a2b3e000"


def test_read_maps_of_a_vanished_process(tmp_path: Path) -> None:
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "maps").write_text(MAPS)

    assert read_maps(tmp_path, 7) is not None
    assert read_maps(tmp_path, 8) is None


def test_fd_links(tmp_path: Path) -> None:
    fd = tmp_path / "9" / "fd"
    fd.mkdir(parents=True)
    (fd / "0").symlink_to("/dev/null")
    (fd / "3").symlink_to("socket:[5001]")
    (fd / "4").symlink_to("/models/m.safetensors (deleted)")
    (fd / "5").symlink_to("pipe:[77]")

    links = sorted(read_fd_links(tmp_path, 9) or [])

    assert links == [
        (0, "/dev/null"),
        (3, "socket:[5001]"),
        (4, "/models/m.safetensors (deleted)"),
        (5, "pipe:[77]"),
    ]
    assert read_fd_links(tmp_path, 10) is None


def test_socket_inode() -> None:
    assert socket_inode("socket:[5001]") == 5001
    assert socket_inode("pipe:[5001]") is None
    assert socket_inode("socket:[x]") is None
    assert socket_inode("/tmp/socket:[1]") is None


def test_netns(tmp_path: Path) -> None:
    ns = tmp_path / "5" / "ns"
    ns.mkdir(parents=True)
    (ns / "net").symlink_to("net:[4026531840]")

    assert read_netns(tmp_path, 5) == "net:[4026531840]"
    assert read_netns(tmp_path, 6) is None
    assert read_netns(Path("/proc"), os.getpid()) == os.readlink("/proc/self/ns/net")
