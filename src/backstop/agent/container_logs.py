"""Which pod and container a container id is, from the kubelet's container log links.

For every container it starts, the kubelet links ``/var/log/containers/<pod>_<namespace>_
<container>-<container id>.log`` to the container's log under ``/var/log/pods``. The names are
the kubelet's own (pod and namespace names and container names never hold ``_``), written
by the kubelet and not by the workload, so they can be trusted as a correction's target; a
process's environment or hostname could say anything. One directory listing per refresh.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from backstop.agent.kubelet_client import ContainerRef
from backstop.core.errors import CollectorError

DEFAULT_DIR = Path("/var/log/containers")
_LINK = re.compile(r"^([^_]+)_([^_]+)_([^_]+)-([0-9a-f]{64})\.log$")


def parse_link_name(name: str) -> tuple[str, ContainerRef] | None:
    """``(container id, container)`` from one link's file name, ``None`` for another file."""
    match = _LINK.match(name)
    if match is None:
        return None
    pod, namespace, container, container_id = match.groups()
    return container_id, ContainerRef(namespace, pod, container)


def read_container_links(directory: Path) -> Mapping[str, ContainerRef]:
    """Every container the directory links, by container id."""
    try:
        with os.scandir(directory) as entries:
            parsed = [parse_link_name(entry.name) for entry in entries]
    except OSError as exc:
        raise CollectorError(f"cannot list {directory}: {exc.strerror or exc}") from exc
    return MappingProxyType(dict(p for p in parsed if p is not None))
