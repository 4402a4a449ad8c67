"""``/proc/PID/cgroup``: the cgroup v2 path of a process and the container it runs in.

Pure text parsing, no I/O: the process collector reads the file, the pod attribution
(:mod:`backstop.agent.pod_cgroups`) reads pod ids from the same paths.
"""

from __future__ import annotations

import re

_CONTAINER_SEGMENT = re.compile(
    r"^(?:(?:docker|cri-containerd|containerd|crio|libpod)-)?([0-9a-f]{64})(?:\.scope)?$"
)
"""One cgroup path segment that names a container: ``<id>`` (docker/containerd cgroupfs,
kubepods cgroupfs), ``docker-<id>.scope``, ``cri-containerd-<id>.scope``, ``crio-<id>.scope``,
``libpod-<id>.scope`` (systemd drivers). ``crio-conmon-`` and ``libpod-conmon-`` scopes hold
the runtime's monitor, not the container, and do not match."""


_HEX_RUN = re.compile(r"[0-9a-f]{64}")


def container_id_from_cgroup(path: str) -> str:
    """The container id named by a cgroup path, or ``""``.

    The innermost match wins, so a container nested in another (docker in docker) is
    reported as itself.
    """
    if not _HEX_RUN.search(path):
        return ""
    for segment in reversed(path.split("/")):
        match = _CONTAINER_SEGMENT.match(segment)
        if match:
            return match.group(1)
    return ""


def parse_cgroup_file(text: str) -> tuple[str, str]:
    """``(cgroup v2 path, container id)`` from the text of ``/proc/PID/cgroup``.

    The v2 path is the ``0::`` line's (``""`` on a v1-only host). The container id comes
    from the v2 path, or else from the first v1 hierarchy whose path names one (hybrid
    hosts, where container runtimes place processes in the v1 hierarchies only).
    """
    v2_path = ""
    v1_paths: list[str] = []
    maybe_container = bool(_HEX_RUN.search(text))
    for line in text.splitlines():
        hierarchy, sep, rest = line.partition(":")
        if not sep:
            continue
        _controllers, sep, path = rest.partition(":")
        if not sep:
            continue
        if hierarchy == "0":
            v2_path = path
        else:
            v1_paths.append(path)
    if not maybe_container:
        return v2_path, ""
    container_id = container_id_from_cgroup(v2_path)
    if not container_id:
        for path in v1_paths:
            container_id = container_id_from_cgroup(path)
            if container_id:
                break
    return v2_path, container_id
