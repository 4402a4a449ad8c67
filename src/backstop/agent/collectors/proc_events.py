"""Process events from the kernel's proc connector: which processes forked, ran ``exec``,
changed name or ids, or exited since the last look.

The proc connector (``NETLINK_CONNECTOR``, group ``CN_IDX_PROC``; ``linux/cn_proc.h``) sends
one datagram per event to every listener. It needs ``CAP_NET_ADMIN``, a socket in the host's
network namespace and a listener in the initial user and PID namespaces (the kernel refuses
the subscription elsewhere and says so in its acknowledgement); :meth:`ProcEvents.open`
returns ``None`` then, and the process collector lists ``/proc`` instead. Events name
processes by their pid in the initial PID namespace.

Thread events (a ``fork`` whose child is a thread of its parent, a thread's ``exit``) are
dropped here: the collector keeps processes. A socket buffer that overflowed (a fork storm
between two looks) is reported as :data:`OVERFLOWED`, and the collector lists ``/proc`` to
catch up.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path

from backstop.agent.netns import socket_in_namespace

log = logging.getLogger(__name__)

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
NLMSG_DONE = 3

PROC_EVENT_NONE = 0x0
PROC_EVENT_FORK = 0x1
PROC_EVENT_EXIT = 0x80000000

SO_RCVBUFFORCE = 33
"""``SO_RCVBUF`` beyond ``net.core.rmem_max`` (needs CAP_NET_ADMIN)."""
RECEIVE_BUFFER_BYTES = 4 << 20
"""Asked of the kernel for the socket (about 50,000 events between two looks)."""

DATAGRAM_BYTES = 65536
"""Read buffer per datagram: an event is 76 bytes."""

_NLMSGHDR = struct.Struct("=IHHII")
_CN_MSG = struct.Struct("=IIIIHH")
_EVENT_HEAD = struct.Struct("=IIQ")
_FOUR_IDS = struct.Struct("=IIII")
_EVENT_DATA_AT = _NLMSGHDR.size + _CN_MSG.size + _EVENT_HEAD.size
_EVENT_AT = _NLMSGHDR.size + _CN_MSG.size


@dataclass(slots=True)
class Changes:
    """What the events since the last look name, by process id (``tgid``)."""

    touched: set[int] = field(default_factory=set)
    """Processes that were created, ran ``exec``, renamed themselves or changed ids."""
    exited: set[int] = field(default_factory=set)
    """Processes that exited (they may linger as zombies until their parent reaps them)."""


OVERFLOWED = None
"""What :meth:`ProcEvents.drain` returns when events were lost: list ``/proc`` again."""


def parse_event(data: bytes, changes: Changes) -> int | None:
    """Fold one datagram into ``changes``; the ``ack`` error of a subscription answer (or
    ``None`` for any other message)."""
    if len(data) < _EVENT_DATA_AT + _FOUR_IDS.size:
        return None
    what: int = _EVENT_HEAD.unpack_from(data, _EVENT_AT)[0]
    ids: tuple[int, int, int, int] = _FOUR_IDS.unpack_from(data, _EVENT_DATA_AT)
    first, second, third, fourth = ids
    if what == PROC_EVENT_NONE:
        return first  # the subscription's answer: struct { __u32 err; } ack
    if what == PROC_EVENT_FORK:
        # parent pid, parent tgid, child pid, child tgid: a new thread has pid != tgid
        if third == fourth:
            changes.touched.add(fourth)
    elif what == PROC_EVENT_EXIT:
        if first == second:
            changes.exited.add(second)
    elif first == second:
        # exec, uid, gid, sid, ptrace, comm, coredump: (pid, tgid, ...); a thread's own
        # name or ids (pid != tgid) are not the process's
        changes.touched.add(second)
    return None


def _connector_socket() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER_BYTES)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
    return sock


def _subscribed(sock: socket.socket, ack_timeout_s: float) -> socket.socket:
    """``sock`` listening to process events; closed, and ``OSError``, where refused."""
    try:
        sock.bind((0, CN_IDX_PROC))
        sock.send(_listen_message())
        sock.settimeout(ack_timeout_s)
        error = None
        while error is None:
            error = parse_event(sock.recv(DATAGRAM_BYTES), Changes())
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    if error:
        sock.close()
        raise OSError(error, f"subscription refused: {os.strerror(error)}")
    return sock


def _listen_message() -> bytes:
    op = struct.pack("=I", PROC_CN_MCAST_LISTEN)
    cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(op), 0) + op
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(cn), NLMSG_DONE, 0, 0, 0) + cn


class ProcEvents:
    """A subscription to the proc connector; :meth:`drain` says what changed since the last."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    @classmethod
    def open(
        cls, ack_timeout_s: float = 0.5, host_netns: Path = Path("/proc/1/ns/net")
    ) -> ProcEvents | None:
        """Subscribe; ``None`` (with a debug line saying why) where the kernel refuses.

        The connector lives in the host's network namespace only: an agent in a pod of its own
        network (hostPID, not hostNetwork) makes its socket in ``host_netns``, pid 1's
        (:func:`~backstop.agent.netns.socket_in_namespace`, which needs CAP_SYS_ADMIN)."""
        try:
            elsewhere = os.stat(host_netns).st_ino != os.stat("/proc/self/ns/net").st_ino
        except OSError:
            elsewhere = False  # no view of pid 1's namespace: try this one
        try:
            sock = (
                socket_in_namespace(host_netns, _connector_socket)
                if elsewhere
                else _connector_socket()
            )
            return cls(_subscribed(sock, ack_timeout_s))
        except OSError as exc:
            log.debug("no proc connector", extra={"error": str(exc)})
            return None

    def drain(self) -> Changes | None:
        """The changes since the last call, or :data:`OVERFLOWED` when events were lost."""
        changes = Changes()
        recv = self._sock.recv
        while True:
            try:
                data = recv(DATAGRAM_BYTES)
            except BlockingIOError:
                return changes
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self._discard()
                    return OVERFLOWED
                raise
            parse_event(data, changes)

    def _discard(self) -> None:
        """Empty the socket after an overflow: the listing that follows covers it all."""
        while True:
            try:
                self._sock.recv(DATAGRAM_BYTES)
            except OSError:
                return

    def close(self) -> None:
        self._sock.close()
