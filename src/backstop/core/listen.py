"""Binding a daemon's ports: exclusively, and failing at start with a message that says why.

gRPC turns on ``SO_REUSEPORT`` by default, so a second controller on a port already in use
would start and share it with the first (the kernel then spreads connections between them).
Every Backstop gRPC server is built with ``grpc.so_reuseport`` = 0 (:data:`EXCLUSIVE`); when a
bind fails, :func:`cannot_listen` says which address and why (in use, not an address of this
host, no permission), found by trying the address with a plain socket.
"""

from __future__ import annotations

import errno
import socket
from typing import Final

from backstop.core.errors import InvalidInput
from backstop.core.netaddr import split_host_port

EXCLUSIVE: Final = ("grpc.so_reuseport", 0)
"""The gRPC server option that keeps a port to one process."""


def cannot_listen(what: str, address: str, exc: OSError | None = None) -> InvalidInput:
    """The error a daemon stops with when it cannot have ``address`` for ``what``."""
    why = describe_bind_error(exc) if exc is not None else bind_problem(address)
    return InvalidInput(f"cannot listen for {what} on {address}: {why}")


def bind_problem(address: str) -> str:
    """Why ``address`` cannot be bound, found by trying with a plain socket."""
    host, port = split_host_port(address)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"cannot resolve {host!r} ({exc.strerror})"
    family, kind, proto, _, sockaddr = infos[0]
    try:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(sockaddr)
    except OSError as exc:
        return describe_bind_error(exc)
    return "the bind failed (retry with GRPC_VERBOSITY=debug to see why)"


def describe_bind_error(exc: OSError) -> str:
    """A bind error in words an operator can act on."""
    if exc.errno == errno.EADDRINUSE:
        return "the address is already in use (another controller or agent? see `ss -ltnp`)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "that is not an address of this host"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges)"
    return exc.strerror or str(exc)
