"""``backstop workloads`` and ``describe workload`` show each workload's SM share and network
traffic; what the agent could not read shows as ``-`` and is absent from ``-o json``."""

from __future__ import annotations

from typing import Any

from tests.cli.conftest import B1_SM_PCT, Rig
from tests.support.cluster import wait_for


def _with_network(rig: Rig, pid: int) -> dict[str, Any]:
    return wait_for(
        lambda: (w := rig.cluster.workloads_by_pid().get(pid)) and "network" in w and w,
        20,
        f"network of {pid}",
    )


def test_json_carries_sm_share_and_network(rig: Rig) -> None:
    busy = _with_network(rig, rig.b1.pid)
    (gpu,) = busy["fingerprint"]["gpus"]
    assert gpu["sm_util_pct"] == B1_SM_PCT
    assert "gpu_instance_id" not in gpu  # MIG is off
    net = busy["network"]
    assert net["source"] == "sockets"  # the host's namespace: its TCP sockets, none open
    assert (net["egress_bytes"], net["ingress_bytes"]) == (0, 0)

    idle = rig.cluster.workloads_by_pid()[rig.b2.pid]
    assert idle["fingerprint"]["gpus"][0]["sm_util_pct"] == 0
    unsupported = rig.cluster.workloads_by_pid()[rig.hostile.pid]
    assert "sm_util_pct" not in unsupported["fingerprint"]["gpus"][0]  # unavailable, not 0


def test_the_table_has_an_sm_column(rig: Rig) -> None:
    result = rig.cluster.cli("workloads", "-o", "wide")
    assert result.code == 0, result.err
    header, *rows = result.out.splitlines()
    column = header.index(" SM ") + 1
    cells = {
        pid: row[column:].split()[0]
        for row in rows
        for pid in (rig.b1.pid, rig.b2.pid, rig.hostile.pid)
        if f" {pid} " in row
    }
    assert cells == {rig.b1.pid: f"{B1_SM_PCT}%", rig.b2.pid: "0%", rig.hostile.pid: "-"}


def test_describe_shows_gpu_share_and_network(rig: Rig) -> None:
    _with_network(rig, rig.b1.pid)
    result = rig.cluster.cli("describe", "workload", rig.workload_id(rig.b1.pid))
    assert result.code == 0, result.err
    assert f"{B1_SM_PCT}% SM" in result.out
    (network,) = [line for line in result.out.splitlines() if line.startswith("network:")]
    assert network.startswith("network: egress 0B (")
    assert network.endswith(" from sockets")
