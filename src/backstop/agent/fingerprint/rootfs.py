"""Open a file by a path as a workload sees it, never leaving the workload's root.

``/proc/PID/root/<path>`` alone is not safe: an absolute symlink inside a container resolves
against the *agent's* root, so a tenant could point ``config.json`` at a host file. Here each
component is opened relative to the one before with ``O_NOFOLLOW``; a symlink is read and
resolved by hand, absolute ones from the workload's root, and ``..`` never climbs above it
(what ``openat2``'s ``RESOLVE_IN_ROOT`` does). A racing rename can make the lookup fail, not
escape. At most ``MAX_LINKS`` symlinks are followed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

MAX_LINKS = 40
MAX_COMPONENTS = 256
_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


class OutsideRoot(OSError):
    """The path cannot be resolved within the root (too many links or components)."""


def open_in_root(root: Path, path: str) -> int:
    """A read-only fd of the regular file ``path`` under ``root`` (``/proc/PID/root``)."""
    walk = _Walk(os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC), path)
    try:
        return walk.run()
    finally:
        walk.close()


class _Walk:
    """The directories entered so far (``stack[0]`` is the root) and the parts still to go."""

    def __init__(self, root_fd: int, path: str) -> None:
        self.stack = [root_fd]
        self.path = path
        self.pending = _parts(path)
        self.links = 0

    def run(self) -> int:
        while self.pending:
            part = self.pending.pop(0)
            if part == "..":
                self._up(1)
                continue
            fd = os.open(part, _PATH_FLAGS, dir_fd=self.stack[-1])
            mode = os.fstat(fd).st_mode
            if stat.S_ISLNK(mode):
                os.close(fd)
                self._follow(os.readlink(part, dir_fd=self.stack[-1]))
            elif stat.S_ISDIR(mode) and self.pending:
                self.stack.append(fd)
            elif stat.S_ISREG(mode) and not self.pending:
                try:
                    return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
                finally:
                    os.close(fd)
            else:
                os.close(fd)
                raise OutsideRoot(f"{self.path} is not a regular file within the root")
        raise OutsideRoot(f"{self.path!r} names the root, not a file")

    def _follow(self, target: str) -> None:
        self.links += 1
        if self.links > MAX_LINKS:
            raise OutsideRoot(f"more than {MAX_LINKS} symlinks in {self.path}")
        if target.startswith("/"):
            self._up(len(self.stack))
        self.pending = _parts(target) + self.pending
        if len(self.pending) > MAX_COMPONENTS:
            raise OutsideRoot(f"more than {MAX_COMPONENTS} components in {self.path}")

    def _up(self, levels: int) -> None:
        """Leave ``levels`` directories, never the root itself."""
        for _ in range(levels):
            if len(self.stack) > 1:
                os.close(self.stack.pop())

    def close(self) -> None:
        for fd in self.stack:
            os.close(fd)


def read_in_root(root: Path, path: str, max_bytes: int) -> bytes:
    """The whole file (at most ``max_bytes``; a larger one is refused)."""
    fd = open_in_root(root, path)
    try:
        size = os.fstat(fd).st_size
        if size > max_bytes:
            raise OutsideRoot(f"{path} is over {max_bytes} bytes")
        return os.pread(fd, max_bytes + 1, 0)[:max_bytes]
    finally:
        os.close(fd)


def _parts(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if len(parts) > MAX_COMPONENTS:
        raise OutsideRoot(f"more than {MAX_COMPONENTS} components in {path[:80]}")
    return parts
