"""A workload's network traffic: egress and ingress bytes and their rates, and where they were
read. The agent reads them (:mod:`backstop.agent.network_use`) from the workload's own network
namespace or, in the host's, from its TCP sockets; a count or rate it cannot read is ``None``
("unavailable"), never zero or a guess."""

from __future__ import annotations

from dataclasses import dataclass

SOURCE_NETNS = "netns"
"""Counted on the interfaces of the workload's own network namespace (loopback left out)."""
SOURCE_SOCKETS = "sockets"
"""Counted on the workload's TCP sockets open now (sock_diag ``tcp_info``)."""


@dataclass(frozen=True, slots=True)
class NetworkUse:
    """One workload's traffic as of its latest reading."""

    source: str = ""
    """:data:`SOURCE_NETNS`, :data:`SOURCE_SOCKETS`, or ``""`` when nothing could be read."""
    egress_bytes: int | None = None
    ingress_bytes: int | None = None
    egress_bytes_per_s: float | None = None
    """From the change since the previous reading; ``None`` on the first and when a count
    went back."""
    ingress_bytes_per_s: float | None = None
    unavailable: str = ""
    """Why nothing could be read (``""`` when it could)."""
    sampled_at_s: float = 0.0
