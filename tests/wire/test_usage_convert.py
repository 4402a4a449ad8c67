"""GPU and network use on the wire: what the agent could not read stays unset both ways (and
absent from ``-o json``), never zero; values out of range are refused."""

from __future__ import annotations

import pytest

from backstop.core.errors import InvalidInput
from backstop.core.models import Fingerprint, GpuUse, Workload
from backstop.core.network import SOURCE_NETNS, NetworkUse
from backstop.wire.convert import workload_from_pb, workload_to_pb
from backstop.wire.json_form import message_fields
from backstop.wire.usage_convert import gpu_use_to_pb, network_from_pb, network_to_pb


def test_gpu_use_and_network_round_trip_with_unset_fields_kept_unset() -> None:
    wl = Workload(
        workload_id="wl-1",
        node_id="node-1",
        root_pid=10,
        pids=(10,),
        fingerprint=Fingerprint(
            gpus=(
                GpuUse("GPU-a", 2**30, sm_util_pct=62, gpu_instance_id=1, compute_instance_id=0),
                GpuUse("GPU-b", 2**20),
            )
        ),
        network=NetworkUse(
            source=SOURCE_NETNS, egress_bytes=5000, ingress_bytes=0, egress_bytes_per_s=12.5
        ),
    )
    msg = workload_to_pb(wl)
    assert workload_from_pb(msg) == wl

    data = message_fields(msg)
    first, second = data["fingerprint"]["gpus"]
    assert (first["sm_util_pct"], first["gpu_instance_id"], first["compute_instance_id"]) == (
        62,
        1,
        0,
    )
    assert "sm_util_pct" not in second
    assert "gpu_instance_id" not in second
    net = data["network"]
    assert (net["egress_bytes"], net["ingress_bytes"], net["egress_bytes_per_s"]) == (5000, 0, 12.5)
    assert "ingress_bytes_per_s" not in net  # unavailable: absent, not 0


def test_a_workload_never_read_has_no_network() -> None:
    wl = Workload("wl-1", "node-1", 10, (10,), Fingerprint())
    msg = workload_to_pb(wl)
    assert not msg.HasField("network")
    assert workload_from_pb(msg).network is None


def test_an_sm_share_over_100_is_refused() -> None:
    msg = workload_to_pb(Workload("wl-1", "node-1", 10, (10,), Fingerprint(gpus=(GpuUse("G"),))))
    msg.fingerprint.gpus[0].CopyFrom(gpu_use_to_pb(GpuUse("G", 0, sm_util_pct=100)))
    msg.fingerprint.gpus[0].sm_util_pct = 101
    with pytest.raises(InvalidInput, match="sm_util_pct"):
        workload_from_pb(msg)


def test_a_negative_rate_is_refused() -> None:
    msg = network_to_pb(NetworkUse(source=SOURCE_NETNS, egress_bytes_per_s=1.0))
    msg.egress_bytes_per_s = -1.0
    with pytest.raises(InvalidInput, match="egress_bytes_per_s"):
        network_from_pb(msg)
