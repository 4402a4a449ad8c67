"""Which Kubernetes pod a process belongs to, read from its cgroup path.

The kubelet places every pod in a cgroup named for the pod's UID, under ``kubepods``; the
container runtime places each container in a cgroup below it named for the container id:

- systemd driver: ``/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/
  cri-containerd-<id>.scope`` (``crio-<id>.scope``, ``docker-<id>.scope``); the UID's dashes
  are written as underscores, since a dash is the slice hierarchy separator; Guaranteed pods
  sit directly under ``kubepods.slice`` (``kubepods-pod<uid>.slice``);
- cgroupfs driver: ``/kubepods/burstable/pod<uid>/<id>`` (``/kubepods/pod<uid>/<id>``).

Nested nodes (kind, a kubelet in a container) add segments above ``kubepods``; the innermost
pod segment wins. The container id is
:func:`~backstop.agent.collectors.cgroup_file.container_id_from_cgroup`'s. Pure: no I/O.
"""

from __future__ import annotations

import functools
import re

_POD_SEGMENT = re.compile(
    r"^(?:(?:[a-z0-9]+-)*kubepods(?:-burstable|-besteffort)?-)?pod"
    r"([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})(?:\.slice)?$"
)
"""``pod<uid>`` (cgroupfs) or ``[<parent>-]kubepods[-<qos>]-pod<uid>.slice`` (systemd; kind's
nodes nest it as ``kubelet-kubepods-...``)."""


@functools.lru_cache(maxsize=4096)
def pod_uid_from_cgroup(path: str) -> str:
    """The pod UID (with dashes) named by a cgroup path under ``kubepods``, or ``""``.

    Cached: every sample asks again for the same few paths."""
    if "kubepods" not in path:
        return ""
    for segment in reversed(path.split("/")):
        match = _POD_SEGMENT.match(segment)
        if match:
            return match.group(1).replace("_", "-")
    return ""
