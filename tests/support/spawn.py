"""Starting long-lived helper servers (the Kubernetes control plane, PostgreSQL, moto) from tests.

The kernel should kill them if the test process dies without running its finalizers (SIGKILL,
``os._exit``): that is the parent-death signal. It is set by ``setpriv`` just before exec, not by
a ``preexec_fn``. With a ``preexec_fn`` (or a uid change) ``subprocess`` must ``fork()``,
and a forked child runs gRPC's ``pthread_atfork`` handlers: with gRPC's pollers busy in the
test process, that once aborted a kube-controller-manager before it could exec (SIGABRT,
"epoll_wait error: Bad file descriptor" in its log). Without either, ``subprocess`` uses
``vfork()``, which runs no fork handlers.
"""

from __future__ import annotations

import shutil

SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"


def dying_with_parent(argv: list[str]) -> list[str]:
    """``argv``, killed (SIGKILL) by the kernel when the test process dies."""
    return [SETPRIV, "--pdeathsig", "KILL", "--", *argv]


def as_account(argv: list[str], uid: int, gid: int) -> list[str]:
    """``argv`` under another account (no supplementary groups). Changing credentials clears
    the parent-death signal, so wrap ``dying_with_parent(argv)``, not the other way round."""
    return [SETPRIV, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--", *argv]
