"""The kernel's sock_diag netlink dump of TCP sockets, shared by whoever reads sockets.

Owns the wire format of one ``SOCK_DIAG_BY_FAMILY`` dump (``inet_diag_req_v2`` out,
``inet_diag_msg`` replies in, until ``NLMSG_DONE``) and the netlink socket it runs on. What
each reply means is the caller's: :mod:`backstop.agent.fingerprint.listeners` takes the port
and inode of ``LISTEN`` sockets, :mod:`backstop.agent.collectors.sock_diag` the byte counters
of ``tcp_info``. A refused dump raises :class:`DumpRefused` (an ``OSError``).
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
ALL_STATES = 0xFFFFFFFF
TCP_LISTEN = 10
"""The ``LISTEN`` state's number (a state's bit in a request is ``1 << state``)."""

NLMSGHDR = struct.Struct("=IHHII")
_DIAG_REQ = struct.Struct("=BBBBI48x")
"""``inet_diag_req_v2``: family, protocol, ext, pad, states, zeroed ``inet_diag_sockid``."""
SPORT_OFFSET = 4
"""``inet_diag_msg.id.idiag_sport`` (network byte order)."""
INODE_OFFSET = 68
"""``inet_diag_msg.idiag_inode``."""
MSG_LEN = 72
"""``sizeof(struct inet_diag_msg)``; attributes (``rtattr``) follow it."""
_RECV_BYTES = 65536


class DumpRefused(OSError):
    """The kernel answered the dump request with an error."""


def diag_socket(timeout_s: float = 1.0) -> socket.socket:
    """A netlink sock_diag socket in the caller's network namespace."""
    sock = socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG
    )
    sock.settimeout(timeout_s)
    return sock


def dump_tcp(
    sock: socket.socket,
    family: int,
    sequence: int,
    on_message: Callable[[bytes], None],
    *,
    states: int = ALL_STATES,
    ext: int = 0,
    keep_going: Callable[[], bool] = lambda: True,
) -> None:
    """Ask for the TCP sockets of ``family`` in ``states`` (a bit per state) with the
    attributes ``ext`` asks for, and pass each ``inet_diag_msg`` (with its attributes) to
    ``on_message``; ``keep_going`` returning False stops it with an ``OSError``."""
    request = _DIAG_REQ.pack(family, socket.IPPROTO_TCP, ext, 0, states)
    header = NLMSGHDR.pack(
        NLMSGHDR.size + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, sequence, 0
    )
    sock.send(header + request)
    while True:
        if not keep_going():
            raise OSError("the socket dump ran past its bound")
        data = sock.recv(_RECV_BYTES)
        if not data:
            raise OSError("netlink socket closed")
        offset = 0
        while offset + NLMSGHDR.size <= len(data):
            length, kind, _flags, seq, _port = NLMSGHDR.unpack_from(data, offset)
            if length < NLMSGHDR.size:
                raise OSError("malformed netlink message")
            body = offset + NLMSGHDR.size
            if seq == sequence:
                if kind == NLMSG_DONE:
                    return
                if kind == NLMSG_ERROR:
                    (errno,) = struct.unpack_from("=i", data, body)
                    raise DumpRefused(-errno, os.strerror(-errno))
                if length >= NLMSGHDR.size + INODE_OFFSET + 4:
                    on_message(data[body : offset + length])
            offset += (length + 3) & ~3
