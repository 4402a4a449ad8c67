"""Per-workload serving telemetry: which port answers, and rates from counter deltas.

A workload's listening ports are probed (at most ``MAX_PORTS`` of them, lowest first, one per
reading) until one answers like a known server; that port is then read at most once per
``interval_s``. A port that answered nothing useful, or stopped answering, is left alone for
``retry_s``; so a reading costs at most two bounded requests, whatever the workload does.
Rates come from the change of a counter between two readings; a counter that went backwards
(the server restarted) gives no rate for that interval rather than a negative or a wrong one.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from backstop.agent.netns import socket_in_namespace
from backstop.agent.serving.http_probe import Connect, ProbeFailed, get, loopback
from backstop.agent.serving.servers import Scrape, read_metrics, read_ollama_ps
from backstop.core.serving import ServingStats

log = logging.getLogger(__name__)

MAX_PORTS = 4
INTERVAL_S = 5.0
RETRY_S = 60.0
PROBE_TIMEOUT_S = 0.5


@dataclass
class _Seen:
    port: int = 0
    path: str = ""
    last: Scrape | None = None
    last_at_s: float = 0.0
    """When it was last read or probed."""
    scraped_at_s: float = 0.0
    """When ``last`` was read."""
    stats: ServingStats | None = None
    refused: dict[int, float] = field(default_factory=dict)
    """Ports that answered nothing useful, and when."""


Probe = Callable[[int, str, Connect], str]


def _probe(port: int, path: str, connect: Connect) -> str:
    return get(port, path, connect, timeout_s=PROBE_TIMEOUT_S)


class ServingTracker:
    """Reads each serving workload's own metrics, at most once per interval."""

    def __init__(
        self,
        interval_s: float = INTERVAL_S,
        retry_s: float = RETRY_S,
        proc_root: Path = Path("/proc"),
        probe: Probe = _probe,
    ) -> None:
        self._interval_s = interval_s
        self._retry_s = retry_s
        self._root = proc_root
        self._probe = probe
        self._seen: dict[str, _Seen] = {}
        self.reads = 0
        """HTTP requests made so far (for the agent's own cost metrics and tests)."""
        try:
            self._own_netns = os.readlink("/proc/self/ns/net")
        except OSError:
            self._own_netns = ""

    def stats(
        self, workload_id: str, pid: int, ports: Sequence[int], now_s: float
    ) -> ServingStats | None:
        """The workload's serving telemetry as of its latest reading (``None``: no server)."""
        seen = self._seen.setdefault(workload_id, _Seen())
        if seen.last_at_s and now_s - seen.last_at_s < self._interval_s:
            return seen.stats
        return self._reading(seen, pid, ports, now_s)

    def last(self, workload_id: str) -> ServingStats | None:
        """The latest stats without reading (when the sample has no time left to read)."""
        seen = self._seen.get(workload_id)
        return seen.stats if seen is not None else None

    def _reading(
        self, seen: _Seen, pid: int, ports: Sequence[int], now_s: float
    ) -> ServingStats | None:
        seen.last_at_s = now_s
        connect = self._connector(pid)
        if seen.port and seen.port in ports:
            scrape = self._read(seen.port, seen.path, connect)
            if scrape is not None:
                self._update(seen, scrape, now_s)
                return seen.stats
            seen.refused[seen.port] = now_s  # stopped answering (paused, or restarting)
            seen.port, seen.last, seen.stats = 0, None, None
            return None
        for port in sorted(ports)[:MAX_PORTS]:
            if now_s - seen.refused.get(port, -self._retry_s) < self._retry_s:
                continue
            for path in ("/metrics", "/api/ps"):
                scrape = self._read(port, path, connect)
                if scrape is not None:
                    seen.port, seen.path, seen.last = port, path, None
                    self._update(seen, scrape, now_s)
                    return seen.stats
            seen.refused[port] = now_s
            break  # one unknown port per reading: a reading costs at most two requests
        return None

    def retain(self, live: Iterable[str]) -> None:
        """Forget workloads that are gone."""
        keep = set(live)
        for workload_id in self._seen.keys() - keep:
            del self._seen[workload_id]

    def _read(self, port: int, path: str, connect: Connect) -> Scrape | None:
        self.reads += 1
        try:
            text = self._probe(port, path, connect)
        except ProbeFailed as exc:
            log.debug("no serving metrics on port %d: %s", port, exc)
            return None
        return read_metrics(text) if path == "/metrics" else read_ollama_ps(text)

    def _update(self, seen: _Seen, scrape: Scrape, now_s: float) -> None:
        before = seen.last if seen.last is not None else Scrape(scrape.server)
        elapsed = now_s - seen.scraped_at_s if seen.last is not None else 0.0

        def rate(total: float | None, earlier: float | None) -> float | None:
            if total is None or earlier is None or elapsed <= 0 or total < earlier:
                return None
            return (total - earlier) / elapsed

        seen.stats = ServingStats(
            server=scrape.server,
            port=seen.port,
            model_name=scrape.model_name,
            generated_tokens_per_s=rate(
                scrape.generated_tokens_total, before.generated_tokens_total
            ),
            prompt_tokens_per_s=rate(scrape.prompt_tokens_total, before.prompt_tokens_total),
            requests_running=scrape.running,
            requests_waiting=scrape.waiting,
            inferences_per_s=rate(scrape.inferences_total, before.inferences_total),
            sampled_at_s=now_s,
        )
        seen.last, seen.scraped_at_s = scrape, now_s

    def _connector(self, pid: int) -> Connect:
        """Loopback in the agent's namespace, or a socket made inside the workload's."""
        ns_path = self._root / str(pid) / "ns" / "net"
        try:
            netns = os.readlink(ns_path)
        except OSError:
            return loopback
        if not netns or netns == self._own_netns:
            return loopback

        def inside(port: int, timeout_s: float) -> socket.socket:
            sock = socket_in_namespace(ns_path, lambda: socket.socket(socket.AF_INET))
            sock.settimeout(timeout_s)
            try:
                sock.connect(("127.0.0.1", port))
            except OSError:
                sock.close()
                raise
            return sock

        return inside
