"""A workload's GPU and network use between ``backstop.api.v1`` and :mod:`backstop.core`.

Unset stays unset: an SM share, MIG instance, byte count or rate the agent could not read is
``None`` on both sides, never zero. Numbers are held to their range (a share at most 100,
rates finite and not negative); texts to bounded printable text.
"""

from __future__ import annotations

from backstop.api.v1 import types_pb2
from backstop.core.errors import InvalidInput
from backstop.core.models import GpuUse
from backstop.core.network import NetworkUse
from backstop.wire.checks import MAX_ID_LEN, finite, opt, optional_quantities, set_present, text

_GPU_OPTIONAL = ("sm_util_pct", "gpu_instance_id", "compute_instance_id")
_COUNTS = ("egress_bytes", "ingress_bytes")
_RATES = ("egress_bytes_per_s", "ingress_bytes_per_s")


def gpu_use_to_pb(use: GpuUse) -> types_pb2.GpuUse:
    msg = types_pb2.GpuUse(gpu_uuid=use.gpu_uuid, used_memory_bytes=use.used_memory_bytes)
    set_present(msg, use, _GPU_OPTIONAL)
    return msg


def gpu_use_from_pb(msg: types_pb2.GpuUse) -> GpuUse:
    share = opt(msg, "sm_util_pct")
    if share is not None and share > 100:
        raise InvalidInput(f"sm_util_pct must be at most 100, not {share}")
    return GpuUse(
        text(msg.gpu_uuid, "GPU uuid", MAX_ID_LEN),
        msg.used_memory_bytes,
        sm_util_pct=share,
        gpu_instance_id=opt(msg, "gpu_instance_id"),
        compute_instance_id=opt(msg, "compute_instance_id"),
    )


def network_to_pb(use: NetworkUse) -> types_pb2.NetworkUse:
    msg = types_pb2.NetworkUse(
        source=use.source, unavailable=use.unavailable, sampled_at_s=use.sampled_at_s
    )
    set_present(msg, use, (*_COUNTS, *_RATES))
    return msg


def network_from_pb(msg: types_pb2.NetworkUse) -> NetworkUse:
    rates = optional_quantities(msg, _RATES)
    return NetworkUse(
        source=text(msg.source, "network source", 16),
        egress_bytes=opt(msg, "egress_bytes"),
        ingress_bytes=opt(msg, "ingress_bytes"),
        unavailable=text(msg.unavailable, "network unavailable reason", 512),
        sampled_at_s=finite(msg.sampled_at_s, "network sampled_at_s"),
        **rates,
    )
