"""Workload discovery: which process trees use a GPU or serve a model, and their fingerprints.

A process is *detected* when NVML lists it on a GPU, or when it holds a TCP socket in LISTEN
state and has a model weights file open or mapped. Both must hold for the same process: were
a listener's descendants enough, ``sshd`` or a socket-activating init would become the root
of any model a user started under it, and a correction aimed at the model would hit them.
Detected processes are grouped into workloads:

- processes of one container (same ``container_id``) form one workload: its root is the
  container's oldest top-level process and its pids are every process of the container and
  their descendants;
- otherwise a detected process joins the workload of its topmost detected ancestor; the
  workload's pids are that root and all its descendants.

Cost (the agent samples every second on nodes with 1,000 processes): the LISTEN sockets are
listed once per network namespace per call, through netlink where possible
(:mod:`backstop.agent.fingerprint.listeners`). Open files (``/proc/PID/fd``) are listed only

- for processes of workloads and for listeners: at first sight, then once
  per ``rescan_interval_s`` together with ``/proc/PID/maps`` (each process on its own clock,
  so rescans spread out);
- when a LISTEN socket appears that no known process holds: the namespace's processes are
  searched at once, never-scanned ones first, until its holder is found; a socket whose
  holder cannot be found is searched again after a growing back-off, among the processes
  not searched since its last full search (new ones), and in full once per
  :data:`MAX_SEARCH_BACKOFF_S` (a socket can be handed to an old process).

Everything is cached per process incarnation ``(pid, create_time)``. Weights seen in a
process stay in its fingerprint for the process's life (servers unmap their weights once
loaded onto the GPU), at most
:data:`~backstop.agent.process_state.MAX_WEIGHTS_PER_PROCESS` of them. Weights are only read
through ``/proc/PID/fd/N`` and ``/proc/PID/map_files`` links, which lead to the very file
the process holds; the fallback through ``/proc/PID/root`` reads a file only when its
device and inode match the mapping.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from backstop.agent.collectors.processes import ProcessSnapshot, ProcInfo
from backstop.agent.fingerprint import procfs
from backstop.agent.fingerprint.behaviour import classify
from backstop.agent.fingerprint.framework import FrameworkMatch, combine_matches, match_process
from backstop.agent.fingerprint.listeners import ListenSocketReader
from backstop.agent.fingerprint.model_identity import FileModel, ModelIdentifier
from backstop.agent.fingerprint.redact import redact_cmdline
from backstop.agent.fingerprint.weights import (
    WeightsHasher,
    claims_weights,
    expected_format,
    is_weights_candidate,
)
from backstop.agent.grouping import WorkloadGroup, group_workloads
from backstop.agent.process_state import ProcState
from backstop.agent.workload_record import UtilisationAverage, assemble_workload, gpu_uses
from backstop.core.ids import workload_id
from backstop.core.models import GpuProcess, WeightsFile, Workload

log = logging.getLogger(__name__)

MAX_SEARCH_BACKOFF_S = 600.0


@dataclass(frozen=True, slots=True)
class DiscoveryStats:
    """How much ``/proc`` reading discovery has done since it started (for metrics)."""

    fd_scans: int = 0
    maps_scans: int = 0
    listen_table_reads: int = 0
    netns_reads: int = 0


@dataclass(slots=True)
class _Backoff:
    retry_at: float
    attempts: int
    since: float | None
    """When every candidate was last searched (``None``: search them all at the retry)."""


class WorkloadDiscovery:
    """Finds workloads in a process snapshot and fingerprints them; keeps caches between calls."""

    def __init__(
        self,
        node_id: str,
        proc_root: Path = Path("/proc"),
        hasher: WeightsHasher | None = None,
        identifier: ModelIdentifier | None = None,
        rescan_interval_s: float = 30.0,
        *,
        listeners: ListenSocketReader | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._node_id = node_id
        self._root = proc_root
        self._listeners = listeners if listeners is not None else ListenSocketReader(proc_root)
        self._hasher = hasher if hasher is not None else WeightsHasher()
        self._identifier = identifier if identifier is not None else ModelIdentifier()
        self._interval = rescan_interval_s
        self._clock = clock
        self._states: dict[int, ProcState] = {}
        self._holders: set[int] = set()
        """Pids whose last fd scan found LISTEN sockets."""
        self._by_netns: dict[str, list[int]] | None = None
        """Pids per network namespace; rebuilt when processes come or go."""
        self._backoff: dict[int, _Backoff] = {}
        self._util = UtilisationAverage()
        self._fd_scans = 0
        self._maps_scans = 0
        self._listen_reads = 0
        self._netns_reads = 0

    @property
    def node_id(self) -> str:
        return self._node_id

    def close(self) -> None:
        """Release the netlink sockets held for network namespaces."""
        self._listeners.close()

    @property
    def stats(self) -> DiscoveryStats:
        """Counters of the ``/proc`` reads done so far."""
        return DiscoveryStats(
            self._fd_scans, self._maps_scans, self._listen_reads, self._netns_reads
        )

    def discover(
        self,
        procs: ProcessSnapshot,
        gpu_processes: Sequence[GpuProcess],
        gpu_util: Mapping[str, int] | None = None,
    ) -> list[Workload]:
        """The workloads in ``procs``, fingerprinted, ordered by root pid.

        ``gpu_processes`` come from NVML (pids in the host's pid namespace, as ``procs``);
        ``gpu_util`` maps GPU uuid to utilisation percent: one sample per call, whose moving
        average and recent window per workload feed the behaviour class.
        """
        now = self._clock()
        self._sync(procs)
        listen = self._read_listen_tables()
        self._resolve_listeners(listen, now)
        serving = self._serving_listeners(listen, now)
        gpu_pids = {gp.pid for gp in gpu_processes if gp.pid in procs.processes}
        groups = group_workloads(procs, gpu_pids | serving)
        workloads = [
            self._build(
                group,
                procs=procs,
                listen=listen,
                gpu_processes=gpu_processes,
                gpu_util=gpu_util or {},
                now=now,
            )
            for group in groups
        ]
        self._util.retain({w.workload_id for w in workloads})
        self._identifier.forget_unused()
        return workloads

    # -- process state ------------------------------------------------------------------

    def _sync(self, procs: ProcessSnapshot) -> None:
        """Drop state of processes that have gone; start state for new ones."""
        table = procs.processes
        states = self._states
        for pid in states.keys() - table.keys():
            del states[pid]
            self._holders.discard(pid)
            self._by_netns = None
        for pid, info in table.items():
            state = states.get(pid)
            if state is not None and state.create_time == info.create_time:
                continue
            self._netns_reads += 1
            states[pid] = ProcState(info.create_time, procfs.read_netns(self._root, pid))
            self._holders.discard(pid)
            self._by_netns = None

    # -- listening sockets --------------------------------------------------------------

    def _read_listen_tables(self) -> dict[int, tuple[int, str]]:
        """``{inode: (port, netns)}`` over every network namespace of the known processes."""
        by_netns = self._by_netns
        if by_netns is None:
            by_netns = {}
            for pid, state in self._states.items():
                if state.netns is not None:
                    by_netns.setdefault(state.netns, []).append(pid)
            self._by_netns = by_netns
        listen: dict[int, tuple[int, str]] = {}
        for netns, pids in by_netns.items():
            for pid in pids:
                self._listen_reads += 1
                table = self._listeners.listening(pid, netns)
                if table is not None:
                    for inode, port in table.items():
                        listen[inode] = (port, netns)
                    break
        self._listeners.retain(set(by_netns))
        for inode in self._backoff.keys() - listen.keys():
            del self._backoff[inode]
        return listen

    def _scan_fds(
        self, pid: int, listen: Mapping[int, object], now: float
    ) -> list[tuple[int, str]]:
        """List ``pid``'s fds, record the LISTEN sockets among them, return all links."""
        state = self._states[pid]
        self._fd_scans += 1
        links = procfs.read_fd_links(self._root, pid) or []
        inodes = (procfs.socket_inode(target) for _fd, target in links)
        state.listen_inodes = frozenset(i for i in inodes if i is not None and i in listen)
        state.fd_scanned_at = now
        if state.listen_inodes:
            self._holders.add(pid)
        else:
            self._holders.discard(pid)
        return links

    def _resolve_listeners(self, listen: Mapping[int, tuple[int, str]], now: float) -> None:
        """Find the holders of LISTEN sockets that no known process holds."""
        known: set[int] = set()
        for pid in self._holders:
            known.update(self._states[pid].listen_inodes)
        unknown = {
            inode
            for inode in listen
            if inode not in known
            and (inode not in self._backoff or self._backoff[inode].retry_at <= now)
        }
        if not unknown:
            return
        namespaces = {listen[inode][1] for inode in unknown}
        # a process searched since a socket's last full search does not hold it
        searched = max(
            b.since if (b := self._backoff.get(i)) and b.since is not None else math.inf
            for i in unknown
        )
        candidates = [
            pid
            for pid, state in self._states.items()
            if state.netns in namespaces and (state.fd_scanned_at or -1.0) < searched
        ]
        candidates.sort(
            key=lambda pid: (
                self._states[pid].fd_scanned_at is not None,
                self._states[pid].fd_scanned_at or 0.0,
                -self._states[pid].create_time,
            )
        )
        for pid in candidates:
            self._scan_fds(pid, listen, now)
            unknown -= self._states[pid].listen_inodes
            if not unknown:
                return
        for inode in unknown:
            previous = self._backoff.get(inode)
            attempts = previous.attempts + 1 if previous else 1
            delay = min(self._interval * 2 ** (attempts - 1), MAX_SEARCH_BACKOFF_S)
            since = now if previous is None or previous.since is None else previous.since
            full_next = delay >= MAX_SEARCH_BACKOFF_S  # the rare full search, for passed fds
            self._backoff[inode] = _Backoff(now + delay, attempts, None if full_next else since)
            log.debug("no process holds listening socket inode %d", inode)

    def _ports(self, pids: Iterable[int], listen: Mapping[int, tuple[int, str]]) -> set[int]:
        ports: set[int] = set()
        for pid in pids:
            state = self._states.get(pid)
            if state is not None:
                ports.update(listen[i][0] for i in state.listen_inodes if i in listen)
        return ports

    def _serving_listeners(self, listen: Mapping[int, tuple[int, str]], now: float) -> set[int]:
        """Listening processes that hold weights."""
        serving: set[int] = set()
        for pid in sorted(self._holders):
            state = self._states[pid]
            if state.listen_inodes & listen.keys():
                self._scan_content(pid, listen, now)
                if state.weights and state.listen_inodes & listen.keys():
                    serving.add(pid)
        return serving

    # -- open and mapped files ----------------------------------------------------------

    def _scan_content(self, pid: int, listen: Mapping[int, object], now: float) -> None:
        """Refresh ``pid``'s sockets, libraries and weights when due."""
        state = self._states.get(pid)
        if state is None:
            return
        if state.content_scanned_at is not None and now - state.content_scanned_at < (
            self._interval
        ):
            return
        state.content_scanned_at = now
        found: dict[str, tuple[WeightsFile, FileModel | None]] = {}
        fd_dir = self._root / str(pid) / "fd"
        for fd, target in self._scan_fds(pid, listen, now):
            path = target.removesuffix(procfs.DELETED_SUFFIX)
            if not path.startswith("/") or not is_weights_candidate(path):
                continue
            link = fd_dir / str(fd)
            try:
                if os.readlink(link) != target:
                    continue  # the fd was closed and reused since the listing
            except OSError:
                continue
            weighed = self._weigh(pid, link, path)
            if weighed is not None:
                found[path] = weighed
        self._maps_scans += 1
        mapped = procfs.read_maps(self._root, pid) or []
        state.libraries = tuple(m.path for m in mapped if ".so" in os.path.basename(m.path))
        state.framework = None
        for mapping in mapped:
            if mapping.path in found or not is_weights_candidate(mapping.path):
                continue
            weighed = self._weigh_mapping(pid, mapping)
            if weighed is not None:
                found[mapping.path] = weighed
        state.remember(found)

    def _weigh_mapping(
        self, pid: int, mapping: procfs.MappedFile
    ) -> tuple[WeightsFile, FileModel | None] | None:
        """A mapped file through ``map_files``, else through the process's root."""
        base = self._root / str(pid)
        link = base / "map_files" / mapping.address_range
        weighed = self._weigh(pid, link, mapping.path)
        if weighed is not None or mapping.deleted or os.path.lexists(link):
            return weighed  # a readable link that is not weights stays unread elsewhere
        return self._weigh(
            pid,
            base / "root" / mapping.path.lstrip("/"),
            mapping.path,
            expected_id=(mapping.device, mapping.inode),
        )

    def _weigh(
        self, pid: int, link: Path, path: str, expected_id: tuple[int, int] | None = None
    ) -> tuple[WeightsFile, FileModel | None] | None:
        """The file's hashes and identity; a file that does not parse is kept, with why."""
        weights = self._hasher.hash_file(link, display_path=path, expected_id=expected_id)
        model = self._identifier.file(link, path, self._root / str(pid) / "root", expected_id)
        if model is None or model.valid:
            return (weights, model) if weights is not None else None
        if weights is None:
            if not claims_weights(path):
                return None  # a .bin or .pth of another kind: Python's own .pth files
            weights = WeightsFile(path, expected_format(path), model.size_bytes, "", "")
        return dataclasses.replace(weights, invalid_reason=model.reason), model

    # -- workloads ----------------------------------------------------------------------

    def _build(
        self,
        group: WorkloadGroup,
        *,
        procs: ProcessSnapshot,
        listen: Mapping[int, tuple[int, str]],
        gpu_processes: Sequence[GpuProcess],
        gpu_util: Mapping[str, int],
        now: float,
    ) -> Workload:
        table = procs.processes
        root = table[group.root_pid]
        for pid in group.pids:
            self._scan_content(pid, listen, now)
        states = [self._states[pid] for pid in group.pids if pid in self._states]

        weights_by_path: dict[str, WeightsFile] = {}
        models_by_path: dict[str, FileModel] = {}
        for state in states:
            weights_by_path.update(state.weights)
            models_by_path.update(state.models)
        weights = tuple(weights_by_path[p] for p in sorted(weights_by_path))
        model = self._identifier.workload(list(models_by_path.values()))

        gpus = gpu_uses(group.pids, gpu_processes)

        framework = combine_matches(self._framework_match(table[pid]) for pid in group.pids)
        ports = tuple(sorted(self._ports(group.pids, listen)))
        wid = workload_id(self._node_id, root.pid, root.create_time, group.container_id)
        util = self._util.update(
            wid, [gpu_util[g.gpu_uuid] for g in gpus if g.gpu_uuid in gpu_util]
        )
        window = self._util.window(wid)
        behaviour, confidence = classify(ports, util, bool(weights), framework, window)

        return assemble_workload(
            self._node_id,
            wid,
            group,
            root,
            cmdline=self._redacted(root),
            framework=framework,
            weights=weights,
            ports=ports,
            gpus=gpus,
            behaviour=(behaviour, confidence),
            model=model,
        )

    def _redacted(self, info: ProcInfo) -> tuple[str, ...]:
        state = self._states.get(info.pid)
        if state is None:
            return redact_cmdline(info.cmdline)
        if state.redacted is None or state.redacted[0] != info.cmdline:
            state.redacted = (info.cmdline, redact_cmdline(info.cmdline))
        return state.redacted[1]

    def _framework_match(self, info: ProcInfo) -> FrameworkMatch:
        state = self._states.get(info.pid)
        if state is None:
            return match_process(info.exe, info.cmdline, ())
        cached = state.framework
        if cached is None or cached[0] != info.exe or cached[1] != info.cmdline:
            match = match_process(info.exe, info.cmdline, state.libraries)
            state.framework = cached = (info.exe, info.cmdline, match)
        return cached[2]
