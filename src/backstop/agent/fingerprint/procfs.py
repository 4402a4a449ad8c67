"""Readers for the ``/proc`` files fingerprints draw on: listening sockets, open files, mappings.

Every reader takes the ``/proc`` root and a pid, returns ``None`` when the process has gone
or cannot be read (a debug line says which), and never follows a path it found: links are
read with ``readlink``, never opened here.

- ``/proc/PID/net/tcp`` and ``tcp6``: sockets in ``LISTEN`` state of the process's network
  namespace, as ``{socket inode: port}``;
- ``/proc/PID/ns/net``: the network namespace, so each namespace's tables are read once;
- ``/proc/PID/fd``: ``(fd, link target)`` pairs, e.g. ``socket:[1234]`` or a file path;
- ``/proc/PID/maps``: mapped files with their address range, device and inode.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

TCP_LISTEN = "0A"
"""``TCP_LISTEN`` in the ``st`` column of ``/proc/net/tcp``."""
DELETED_SUFFIX = " (deleted)"


@dataclass(frozen=True, slots=True)
class MappedFile:
    """One file mapped into a process (the first mapping of each path)."""

    path: str
    """The path as the process sees it, without a ``(deleted)`` suffix."""
    address_range: str
    """``start-end`` in hex, the name of the matching ``/proc/PID/map_files`` entry."""
    device: int
    """``st_dev`` of the mapped file (``os.makedev`` of the major:minor in maps)."""
    inode: int
    deleted: bool = False


def parse_net_tcp(text: str) -> dict[int, int]:
    """``{socket inode: local port}`` for the LISTEN sockets in a ``/proc/net/tcp[6]`` text."""
    found: dict[int, int] = {}
    for line in text.splitlines()[1:]:
        parts = line.split(None, 10)
        if len(parts) < 10 or parts[3] != TCP_LISTEN:
            continue
        try:
            port = int(parts[1].rsplit(":", 1)[1], 16)
            inode = int(parts[9])
        except (IndexError, ValueError):
            continue
        if inode:
            found[inode] = port
    return found


def read_listen_sockets(proc_root: Path, pid: int) -> dict[int, int] | None:
    """LISTEN sockets (IPv4 and IPv6) of the network namespace ``pid`` lives in."""
    found: dict[int, int] = {}
    read_any = False
    for table in ("tcp", "tcp6"):
        try:
            text = (proc_root / str(pid) / "net" / table).read_text("ascii", "replace")
        except OSError as exc:
            log.debug("cannot read net/%s: %s", table, exc, extra={"pid": pid})
            continue
        read_any = True
        found.update(parse_net_tcp(text))
    return found if read_any else None


def read_netns(proc_root: Path, pid: int) -> str | None:
    """The network namespace's identity (``net:[4026531840]``), or ``None``."""
    try:
        return os.readlink(proc_root / str(pid) / "ns" / "net")
    except OSError as exc:
        log.debug("cannot read ns/net: %s", exc, extra={"pid": pid})
        return None


def socket_inode(target: str) -> int | None:
    """The inode of an fd link target ``socket:[1234]``, or ``None`` for anything else."""
    if target.startswith("socket:[") and target.endswith("]"):
        try:
            return int(target[8:-1])
        except ValueError:
            return None
    return None


def read_fd_links(proc_root: Path, pid: int) -> list[tuple[int, str]] | None:
    """``(fd, link target)`` for each open file descriptor of ``pid``."""
    fd_dir = proc_root / str(pid) / "fd"
    try:
        names = os.listdir(fd_dir)
    except OSError as exc:
        log.debug("cannot list fds: %s", exc, extra={"pid": pid})
        return None
    links: list[tuple[int, str]] = []
    for name in names:
        try:
            links.append((int(name), os.readlink(fd_dir / name)))
        except (OSError, ValueError):
            continue  # closed since the listing
    return links


def parse_maps(text: str) -> list[MappedFile]:
    """File-backed mappings in a ``/proc/PID/maps`` text, one per path, in address order."""
    files: dict[str, MappedFile] = {}
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 6 or not parts[5].startswith("/"):
            continue
        path = parts[5]
        deleted = path.endswith(DELETED_SUFFIX)
        if deleted:
            path = path[: -len(DELETED_SUFFIX)]
        if path in files:
            continue
        try:
            inode = int(parts[4])
            major, minor = (int(part, 16) for part in parts[3].split(":"))
        except ValueError:
            continue
        if inode == 0:
            continue
        files[path] = MappedFile(path, parts[0], os.makedev(major, minor), inode, deleted)
    return list(files.values())


def read_maps(proc_root: Path, pid: int) -> list[MappedFile] | None:
    """File-backed mappings of ``pid``."""
    try:
        text = (proc_root / str(pid) / "maps").read_text("utf-8", "replace")
    except OSError as exc:
        log.debug("cannot read maps: %s", exc, extra={"pid": pid})
        return None
    return parse_maps(text)
