"""Sockets made inside another network namespace.

A short-lived thread enters the namespace with ``setns(2)`` (the thread's namespace changes,
never the agent's), creates the socket, and exits; the socket stays bound to the namespace it
was made in. Entering needs CAP_SYS_ADMIN; without it the caller gets the ``OSError``.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

CLONE_NEWNET = 0x40000000


def socket_in_namespace(ns_path: Path, make: Callable[[], socket.socket]) -> socket.socket:
    """``make()`` run inside the network namespace at ``ns_path`` (``/proc/PID/ns/net``)."""
    result: list[socket.socket | OSError] = []

    def enter_and_create() -> None:
        try:
            fd = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            result.append(exc)
            return
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.setns(fd, CLONE_NEWNET) != 0:
                errno = ctypes.get_errno()
                result.append(OSError(errno, f"setns: {os.strerror(errno)}"))
                return
            result.append(make())
        except OSError as exc:
            result.append(exc)
        finally:
            os.close(fd)

    thread = threading.Thread(target=enter_and_create, name="backstop-netns", daemon=True)
    thread.start()
    thread.join()
    outcome = result[0] if result else OSError("namespace thread produced nothing")
    if isinstance(outcome, OSError):
        raise outcome
    return outcome
