"""Per-workload network traffic: egress and ingress bytes, and rates from their change.

A workload in a network namespace of its own (a container, a pod) is counted on that
namespace's interfaces, loopback left out: ``/proc/PID/net/dev`` read through its root
process shows the namespace that process is in, so nothing enters it. A workload in the
agent's own namespace shares the host's interfaces, so it is counted on its own TCP sockets
instead: the inodes of its processes' socket fds matched against one sock_diag dump
(:mod:`~backstop.agent.collectors.sock_diag`) per sample, made only when such a workload is
due. Those count the connections open now; a closed one leaves the count, which then goes
back and gives no rate. What cannot be read is "unavailable", with the reason, never zero.

Cost stays bounded: a workload is read at most once per ``interval_s`` (5 s); at most
``MAX_FDS`` fds per process and ``MAX_PIDS`` processes per workload are looked at; and one
sample spends at most ``budget_s`` here; workloads left over keep their last reading.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from backstop.agent.collectors.sock_diag import SockDiagUnavailable, tcp_bytes_by_inode
from backstop.agent.fingerprint import procfs
from backstop.core.models import Workload
from backstop.core.network import SOURCE_NETNS, SOURCE_SOCKETS, NetworkUse

log = logging.getLogger(__name__)

INTERVAL_S = 5.0
BUDGET_S = 0.5
MAX_PIDS = 256
MAX_FDS = 4096

SocketDump = Callable[[], dict[int, tuple[int, int]]]


@dataclass
class _Seen:
    read_at_s: float
    use: NetworkUse
    source: str = ""
    counts: tuple[int, int] | None = None
    """(egress, ingress) at ``read_at_s``."""


class NetworkTracker:
    """Each workload's traffic, read at most once per interval."""

    def __init__(
        self,
        interval_s: float = INTERVAL_S,
        budget_s: float = BUDGET_S,
        proc_root: Path = Path("/proc"),
        socket_dump: SocketDump = tcp_bytes_by_inode,
    ) -> None:
        self._interval_s = interval_s
        self._budget_s = budget_s
        self._root = proc_root
        self._dump = socket_dump
        self._seen: dict[str, _Seen] = {}
        try:  # the agent's own, whatever proc_root is (a host /proc seen from a container)
            self._own_netns = os.readlink("/proc/self/ns/net")
        except OSError:
            self._own_netns = ""
        self.reads = 0
        """Workload readings made so far (for tests and the agent's cost)."""

    def annotate(self, workloads: Sequence[Workload], now_s: float) -> list[Workload]:
        """``workloads`` with their traffic: read anew when due and within the budget, else
        the last reading (none for a workload never read)."""
        live = {w.workload_id for w in workloads}
        for gone in self._seen.keys() - live:
            del self._seen[gone]
        deadline = time.monotonic() + self._budget_s
        sockets: dict[int, tuple[int, int]] | SockDiagUnavailable | None = None
        out = []
        for w in workloads:
            seen = self._seen.get(w.workload_id)
            due = bool(w.pids) and (seen is None or now_s - seen.read_at_s >= self._interval_s)
            if due and time.monotonic() < deadline:
                netns = procfs.read_netns(self._root, w.root_pid)
                if netns is not None and netns == self._own_netns and sockets is None:
                    sockets = self._socket_counts()
                seen = self._read(w, netns, sockets, now_s, seen)
                self._seen[w.workload_id] = seen
            out.append(dataclasses.replace(w, network=seen.use) if seen is not None else w)
        return out

    def _socket_counts(self) -> dict[int, tuple[int, int]] | SockDiagUnavailable:
        try:
            return self._dump()
        except SockDiagUnavailable as exc:
            log.debug("per-socket counters unavailable: %s", exc)
            return exc

    def _read(
        self,
        w: Workload,
        netns: str | None,
        sockets: dict[int, tuple[int, int]] | SockDiagUnavailable | None,
        now_s: float,
        seen: _Seen | None,
    ) -> _Seen:
        self.reads += 1
        if netns is None:
            return _Seen(now_s, _unavailable("its network namespace cannot be read", now_s))
        if netns != self._own_netns:
            source, counts = SOURCE_NETNS, _interface_bytes(self._root, w.root_pid)
            why = "its namespace's interfaces cannot be read"
        elif isinstance(sockets, dict):
            source, counts = SOURCE_SOCKETS, self._socket_bytes(w.pids, sockets)
            why = "its sockets cannot be listed"
        else:
            return _Seen(now_s, _unavailable(str(sockets or "no socket counters"), now_s))
        if counts is None:
            return _Seen(now_s, _unavailable(why, now_s))
        rates: tuple[float | None, float | None] = (None, None)
        if seen is not None and seen.source == source and seen.counts is not None:
            elapsed = now_s - seen.read_at_s
            rates = (
                _rate(counts[0], seen.counts[0], elapsed),
                _rate(counts[1], seen.counts[1], elapsed),
            )
        use = NetworkUse(
            source=source,
            egress_bytes=counts[0],
            ingress_bytes=counts[1],
            egress_bytes_per_s=rates[0],
            ingress_bytes_per_s=rates[1],
            sampled_at_s=now_s,
        )
        return _Seen(now_s, use, source, counts)

    def _socket_bytes(
        self, pids: Iterable[int], sockets: dict[int, tuple[int, int]]
    ) -> tuple[int, int] | None:
        """Sent-and-acked and received bytes over the sockets the processes hold open."""
        inodes: set[int] = set()
        listed = False
        for pid in list(pids)[:MAX_PIDS]:
            links = procfs.read_fd_links(self._root, pid)
            if links is None:
                continue
            listed = True
            for _fd, target in links[:MAX_FDS]:
                inode = procfs.socket_inode(target)
                if inode is not None:
                    inodes.add(inode)
        if not listed:
            return None
        egress = sum(sockets[i][0] for i in inodes if i in sockets)
        ingress = sum(sockets[i][1] for i in inodes if i in sockets)
        return egress, ingress


def parse_net_dev(text: str) -> tuple[int, int]:
    """(transmitted, received) bytes over every interface of a ``/proc/net/dev`` text but
    loopback."""
    egress = ingress = 0
    for line in text.splitlines()[2:]:
        name, _, rest = line.partition(":")
        fields = rest.split()
        if name.strip() == "lo" or len(fields) < 9:
            continue
        try:
            ingress += int(fields[0])
            egress += int(fields[8])
        except ValueError:
            continue
    return egress, ingress


def _interface_bytes(proc_root: Path, pid: int) -> tuple[int, int] | None:
    try:
        text = (proc_root / str(pid) / "net" / "dev").read_text("ascii", "replace")
    except OSError as exc:
        log.debug("cannot read net/dev: %s", exc, extra={"pid": pid})
        return None
    return parse_net_dev(text)


def _rate(now: int, before: int, elapsed_s: float) -> float | None:
    """Bytes per second; ``None`` when the count went back or no time passed."""
    if now < before or elapsed_s <= 0:
        return None
    return (now - before) / elapsed_s


def _unavailable(why: str, now_s: float) -> NetworkUse:
    return NetworkUse(unavailable=why, sampled_at_s=now_s)
