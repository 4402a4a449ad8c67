"""How a workload's GPU and network use reads on a terminal: the SM share column of
``backstop workloads`` and the GPU and network lines of ``describe workload``. A share, count
or rate the agent could not read shows as ``-`` (unavailable), never as 0."""

from __future__ import annotations

from collections.abc import Sequence

from backstop.cli.render import escape, mib
from backstop.core.models import GpuUse
from backstop.core.network import NetworkUse


def sm_text(gpus: Sequence[GpuUse]) -> str:
    """The SM share of the busiest GPU a workload uses: ``62%``; ``-`` when none is known."""
    shares = [g.sm_util_pct for g in gpus if g.sm_util_pct is not None]
    return f"{max(shares)}%" if shares else "-"


def gpu_line(gpu: GpuUse) -> str:
    """``  GPU-1  1024MiB  62% SM  MIG 1/0``, the MIG part only where the agent gave one."""
    sm = "-" if gpu.sm_util_pct is None else f"{gpu.sm_util_pct}%"
    line = f"  {escape(gpu.gpu_uuid)}  {mib(gpu.used_memory_bytes)}  {sm} SM"
    if gpu.gpu_instance_id is not None:
        ci = "-" if gpu.compute_instance_id is None else str(gpu.compute_instance_id)
        line += f"  MIG GI {gpu.gpu_instance_id} CI {ci}"
    return line


def byte_count(n: int | None) -> str:
    """``-`` when unavailable, else bytes in the largest unit that keeps a whole number."""
    if n is None:
        return "-"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n}B"


def byte_rate(per_s: float | None) -> str:
    return "-" if per_s is None else f"{byte_count(round(per_s))}/s"


def network_line(net: NetworkUse | None) -> str:
    """``egress 1.2MiB (10.0KiB/s), ingress 300B (-) from netns`` or why it is unavailable."""
    if net is None:
        return "not read yet"
    if net.unavailable:
        return f"unavailable: {net.unavailable}"
    return (
        f"egress {byte_count(net.egress_bytes)} ({byte_rate(net.egress_bytes_per_s)}), "
        f"ingress {byte_count(net.ingress_bytes)} ({byte_rate(net.ingress_bytes_per_s)}) "
        f"from {net.source}"
    )
