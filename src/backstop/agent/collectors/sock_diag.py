"""Per-socket TCP byte counters of the agent's network namespace, from sock_diag.

One dump (:mod:`backstop.agent.netlink_diag`, every state but ``LISTEN``, with
``INET_DIAG_INFO``; IPv4 then IPv6) gives each TCP socket's inode with its ``tcp_info``; of
that, ``bytes_acked`` (bytes sent that the peer acknowledged: egress) and ``bytes_received``
(ingress), which kernels since 4.1 fill in. A kernel that refuses the dump, or gives a
``tcp_info`` too short to hold them, makes :func:`tcp_bytes_by_inode` raise
:class:`SockDiagUnavailable` with the reason, so the caller says "unavailable" rather than
guess. A dump is bounded by ``max_sockets`` and a time budget.
"""

from __future__ import annotations

import socket
import struct
import time

from backstop.agent.netlink_diag import (
    ALL_STATES,
    INODE_OFFSET,
    MSG_LEN,
    TCP_LISTEN,
    DumpRefused,
    diag_socket,
    dump_tcp,
)

INET_DIAG_INFO = 2
_RTA = struct.Struct("=HH")
_BYTES_ACKED_OFFSET = 120
"""``tcp_info.tcpi_bytes_acked``: after ``tcpi_total_retrans`` and the two pacing rates."""
_BYTES_RECEIVED_OFFSET = 128
_TCP_INFO_NEEDED = 136

CARRYING = ALL_STATES & ~(1 << TCP_LISTEN)
"""Every state but ``LISTEN``: a listening socket carries no bytes, and leaving it out spares
the kernel's walk of the listening hash (a quarter of the dump's cost here)."""

MAX_SOCKETS = 65536
DUMP_BUDGET_S = 0.25


class SockDiagUnavailable(Exception):
    """The kernel gives no per-socket byte counters here; the message says why."""


def tcp_bytes_by_inode(
    max_sockets: int = MAX_SOCKETS, budget_s: float = DUMP_BUDGET_S
) -> dict[int, tuple[int, int]]:
    """``{socket inode: (bytes_acked, bytes_received)}`` of every TCP socket in the agent's
    network namespace."""
    deadline = time.monotonic() + budget_s
    found: dict[int, tuple[int, int]] = {}

    def take(msg: bytes) -> None:
        (inode,) = struct.unpack_from("=I", msg, INODE_OFFSET)
        counters = _tcp_bytes(msg)
        if inode and counters is not None:
            found[inode] = counters

    def keep_going() -> bool:
        return time.monotonic() < deadline and len(found) <= max_sockets

    try:
        sock = diag_socket(max(0.01, budget_s))
    except OSError as exc:
        raise SockDiagUnavailable(f"no sock_diag netlink socket: {exc}") from exc
    with sock:
        for sequence, family in enumerate((socket.AF_INET, socket.AF_INET6), start=1):
            try:
                dump_tcp(
                    sock, family, sequence, take, states=CARRYING, ext=1 << (INET_DIAG_INFO - 1),
                    keep_going=keep_going,
                )  # fmt: skip
            except DumpRefused as exc:
                if family == socket.AF_INET:
                    raise SockDiagUnavailable(f"the kernel refused the dump: {exc}") from exc
            except OSError as exc:
                raise SockDiagUnavailable(f"sock_diag dump failed: {exc}") from exc
    return found


def _tcp_bytes(msg: bytes) -> tuple[int, int] | None:
    """``(bytes_acked, bytes_received)`` from the message's ``INET_DIAG_INFO`` attribute."""
    offset = MSG_LEN
    while offset + _RTA.size <= len(msg):
        length, kind = _RTA.unpack_from(msg, offset)
        if length < _RTA.size:
            return None
        if kind == INET_DIAG_INFO:
            info = msg[offset + _RTA.size : offset + length]
            if len(info) < _TCP_INFO_NEEDED:
                raise SockDiagUnavailable(
                    f"this kernel's tcp_info ({len(info)} bytes) has no byte counters"
                )
            acked, received = struct.unpack_from("=QQ", info, _BYTES_ACKED_OFFSET)
            return int(acked), int(received)
        offset += (length + 3) & ~3
    return None
