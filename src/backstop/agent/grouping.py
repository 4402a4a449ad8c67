"""How detected processes are grouped into workloads, before any fingerprinting.

Owns :class:`WorkloadGroup` and :func:`group_workloads`: processes of one container form one
workload rooted at the container's oldest top-level process, with every process of the
container and their descendants; any other detected process joins the workload of its
topmost detected ancestor, whose pids are that root and all its descendants. Discovery
(:mod:`backstop.agent.discovery`) decides which processes are detected.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from backstop.agent.collectors.processes import ProcessSnapshot


@dataclass(frozen=True, slots=True)
class WorkloadGroup:
    """Processes that form one workload, before fingerprinting."""

    root_pid: int
    pids: tuple[int, ...]
    """Root first, then the others in pid order."""
    container_id: str = ""


def group_workloads(procs: ProcessSnapshot, detected: Iterable[int]) -> list[WorkloadGroup]:
    """Group detected pids into workloads (see the module docstring), ordered by root pid."""
    table = procs.processes
    detected_set = {pid for pid in detected if pid in table}
    container_of_group: set[str] = set()
    process_roots: set[int] = set()
    for pid in detected_set:
        container = table[pid].container_id
        if not container:
            top = pid
            for ancestor in procs.ancestors(pid):
                if ancestor in detected_set:
                    top = ancestor
            container = table[top].container_id
            if not container:
                process_roots.add(top)
                continue
        container_of_group.add(container)

    groups: list[WorkloadGroup] = []
    claimed: set[int] = set()
    members: dict[str, list[int]] = {c: [] for c in container_of_group}
    for pid, info in table.items():
        if info.container_id in members:
            members[info.container_id].append(pid)
    for container, pids in members.items():
        member_set = set(pids)
        tops = [p for p in pids if table[p].ppid not in member_set]
        root = min(tops or pids, key=lambda p: (table[p].create_time, p))
        tree = set(member_set)
        for pid in pids:
            tree.update(procs.descendants(pid))
        tree.discard(root)
        ordered = (root, *sorted(tree))
        claimed.update(ordered)
        groups.append(WorkloadGroup(root, ordered, container))
    for root in process_roots:
        if root in claimed:
            continue  # a descendant of a container workload: part of it already
        rest = sorted(p for p in procs.descendants(root) if p not in claimed)
        groups.append(WorkloadGroup(root, (root, *rest)))
    groups.sort(key=lambda g: g.root_pid)
    return groups
