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
from backstop.agent.netlink_diag import (
    INODE_OFFSET,
    SPORT_OFFSET,
    TCP_LISTEN,
    DumpRefused,
    diag_socket,
    dump_tcp,
)
from backstop.agent.netns import socket_in_namespace

log = logging.getLogger(__name__)


class _ProcFallback:
    """Marks a namespace whose sockets are read from ``/proc/PID/net/tcp``."""


_FALLBACK = _ProcFallback()


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
                return diag_socket()
            return _diag_socket_in(self._root / str(pid) / "ns" / "net")
        except OSError as exc:
            log.debug("no sock_diag socket for %s, reading /proc: %s", netns, exc)
            return _FALLBACK

    def _dump(self, sock: socket.socket) -> dict[int, int]:
        found: dict[int, int] = {}

        def take(msg: bytes) -> None:
            (port,) = struct.unpack_from(">H", msg, SPORT_OFFSET)
            (inode,) = struct.unpack_from("=I", msg, INODE_OFFSET)
            if inode:
                found[inode] = port

        for family in (socket.AF_INET, socket.AF_INET6):
            self._sequence = (self._sequence + 1) & 0xFFFFFFFF
            try:
                dump_tcp(sock, family, self._sequence, take, states=1 << TCP_LISTEN)
            except DumpRefused as exc:
                if family == socket.AF_INET:
                    raise
                # No IPv6 in this kernel or namespace: no IPv6 listeners either.
                log.debug("sock_diag refused the IPv6 dump: %s", exc)
        return found


def _diag_socket_in(ns_path: Path) -> socket.socket:
    """A sock_diag socket created inside the namespace at ``ns_path`` (needs CAP_SYS_ADMIN)."""
    return socket_in_namespace(ns_path, diag_socket)
