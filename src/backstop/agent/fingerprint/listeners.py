"""Listening TCP sockets of a network namespace, as ``{socket inode: port}``.

Two sources, the cheap one first:

- netlink ``sock_diag`` (what ``ss -lt`` uses), asking the kernel for ``LISTEN`` sockets only:
  it walks the small listening hash and costs tens of microseconds;
- ``/proc/PID/net/tcp`` and ``tcp6``: reading them walks the whole established-connection hash
  table, every bucket, whatever the number of connections: about 5 ms per file with 256 K
  buckets, several times that on a large-memory GPU node. Read per sample, that alone would
  break the agent's budget of 1% of a core, so it is only the fallback (no netlink, no
  permission to enter a namespace, or a ``/proc`` tree that is not the kernel's).

Each namespace gets one netlink socket, kept open while the namespace is in use. A socket for
another namespace is created by a short-lived thread that enters the namespace with
``setns(2)`` (the thread's namespace changes, never the agent's), creates the socket, and
exits; the socket stays bound to the namespace it was made in.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
from pathlib import Path

from backstop.agent.fingerprint.procfs import read_listen_sockets
from backstop.agent.netns import socket_in_namespace

log = logging.getLogger(__name__)

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
TCP_LISTEN = 10

_NLMSGHDR = struct.Struct("=IHHII")
_DIAG_REQ = struct.Struct("=BBBBI48x")
"""``inet_diag_req_v2``: family, protocol, ext, pad, states, zeroed ``inet_diag_sockid``."""
_SPORT_OFFSET = 4
"""``inet_diag_msg.id.idiag_sport`` (network byte order)."""
_INODE_OFFSET = 68
"""``inet_diag_msg.idiag_inode``."""
_RECV_BYTES = 65536


class _ProcFallback:
    """Marks a namespace whose sockets are read from ``/proc/PID/net/tcp``."""


_FALLBACK = _ProcFallback()


class _DumpRefused(OSError):
    """The kernel answered the dump request with an error."""


class ListenSocketReader:
    """Lists LISTEN sockets per network namespace; keeps one netlink socket per namespace."""

    def __init__(self, proc_root: Path = Path("/proc"), *, netlink: bool = True) -> None:
        self._root = proc_root
        self._netlink = netlink
        self._sources: dict[str, socket.socket | _ProcFallback] = {}
        self._sequence = 0
        try:
            self._own_netns = os.readlink("/proc/self/ns/net")
        except OSError:
            self._own_netns = ""

    def listening(self, pid: int, netns: str) -> dict[int, int] | None:
        """``{inode: port}`` of the LISTEN sockets in ``netns``, entered through ``pid``.

        ``None`` when neither source can be read (the process has gone).
        """
        source = self._sources.get(netns)
        if source is None:
            source = self._open(pid, netns)
            self._sources[netns] = source
        if isinstance(source, socket.socket):
            try:
                return self._dump(source)
            except OSError as exc:
                log.debug("sock_diag failed for %s, reading /proc: %s", netns, exc)
                source.close()
                self._sources[netns] = _FALLBACK
        return read_listen_sockets(self._root, pid)

    def retain(self, live: set[str]) -> None:
        """Close the sockets of namespaces not in ``live``."""
        for netns in self._sources.keys() - live:
            source = self._sources.pop(netns)
            if isinstance(source, socket.socket):
                source.close()

    def close(self) -> None:
        """Close every netlink socket."""
        self.retain(set())

    def _open(self, pid: int, netns: str) -> socket.socket | _ProcFallback:
        if not self._netlink:
            return _FALLBACK
        try:
            if netns == self._own_netns:
                return _diag_socket()
            return _diag_socket_in(self._root / str(pid) / "ns" / "net")
        except OSError as exc:
            log.debug("no sock_diag socket for %s, reading /proc: %s", netns, exc)
            return _FALLBACK

    def _dump(self, sock: socket.socket) -> dict[int, int]:
        found: dict[int, int] = {}
        for family in (socket.AF_INET, socket.AF_INET6):
            self._sequence = (self._sequence + 1) & 0xFFFFFFFF
            request = _DIAG_REQ.pack(family, socket.IPPROTO_TCP, 0, 0, 1 << TCP_LISTEN)
            header = _NLMSGHDR.pack(
                _NLMSGHDR.size + len(request),
                SOCK_DIAG_BY_FAMILY,
                NLM_F_REQUEST | NLM_F_DUMP,
                self._sequence,
                0,
            )
            sock.send(header + request)
            try:
                _receive_dump(sock, self._sequence, found)
            except _DumpRefused as exc:
                if family == socket.AF_INET:
                    raise
                # No IPv6 in this kernel or namespace: no IPv6 listeners either.
                log.debug("sock_diag refused the IPv6 dump: %s", exc)
        return found


def _receive_dump(sock: socket.socket, sequence: int, found: dict[int, int]) -> None:
    """Read one dump's replies into ``found`` until ``NLMSG_DONE``."""
    while True:
        data = sock.recv(_RECV_BYTES)
        if not data:
            raise OSError("netlink socket closed")
        offset = 0
        while offset + _NLMSGHDR.size <= len(data):
            length, kind, _flags, seq, _port = _NLMSGHDR.unpack_from(data, offset)
            if length < _NLMSGHDR.size:
                raise OSError("malformed netlink message")
            body = offset + _NLMSGHDR.size
            if seq == sequence:
                if kind == NLMSG_DONE:
                    return
                if kind == NLMSG_ERROR:
                    (errno,) = struct.unpack_from("=i", data, body)
                    raise _DumpRefused(-errno, os.strerror(-errno))
                if length >= _NLMSGHDR.size + _INODE_OFFSET + 4:
                    (port,) = struct.unpack_from(">H", data, body + _SPORT_OFFSET)
                    (inode,) = struct.unpack_from("=I", data, body + _INODE_OFFSET)
                    if inode:
                        found[inode] = port
            offset += (length + 3) & ~3


def _diag_socket() -> socket.socket:
    sock = socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG
    )
    sock.settimeout(1.0)
    return sock


def _diag_socket_in(ns_path: Path) -> socket.socket:
    """A sock_diag socket created inside the namespace at ``ns_path`` (needs CAP_SYS_ADMIN)."""
    return socket_in_namespace(ns_path, _diag_socket)
