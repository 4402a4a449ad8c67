"""The agent's /metrics: DCGM-compatible GPU series, per-workload series and the node label.

GPUs come from the NVML test library through the real pynvml and NvmlBackend; the text is
read back with prometheus_client's own parser.
"""

from __future__ import annotations

import dataclasses
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from backstop.agent import metrics
from backstop.agent.collectors.nvml import GpuSnapshot, NvmlBackend
from backstop.agent.dcgm_series import FIELDS, DcgmSeries
from backstop.agent.workload_series import WorkloadSeries
from backstop.core.models import (
    Behaviour,
    Fingerprint,
    GpuUse,
    Hold,
    IdentifiedModel,
    Workload,
)
from backstop.telemetry.endpoint import TelemetryServer
from tests.support.fake_nvml import FakeGpu, FakeNvml, default_gpus, fake_nvml

__all__ = ["fake_nvml"]  # the fixture, found by pytest in this module

MIB = 2**20

DCGM_TYPES = {
    "DCGM_FI_DEV_SM_CLOCK": "gauge",
    "DCGM_FI_DEV_MEM_CLOCK": "gauge",
    "DCGM_FI_DEV_GPU_TEMP": "gauge",
    "DCGM_FI_DEV_POWER_USAGE": "gauge",
    "DCGM_FI_DEV_POWER_MGMT_LIMIT": "gauge",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": "counter",
    "DCGM_FI_DEV_GPU_UTIL": "gauge",
    "DCGM_FI_DEV_MEM_COPY_UTIL": "gauge",
    "DCGM_FI_DEV_XID_ERRORS": "gauge",
    "DCGM_FI_DEV_FB_FREE": "gauge",
    "DCGM_FI_DEV_FB_USED": "gauge",
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL": "counter",
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": "counter",
}
"""Names and types as in dcgm-exporter's etc/default-counters.csv (and DCGM's field list)."""


@pytest.fixture
def backend(fake_nvml: FakeNvml) -> Iterator[NvmlBackend]:
    nvml = NvmlBackend()
    yield nvml
    nvml.close()


def _gpus() -> list[FakeGpu]:
    gpus = default_gpus(2)
    gpus[0] = dataclasses.replace(
        gpus[0],
        pci_bus_id="00000000:18:00.0",
        energy_mj=987_654_321,
        ecc_sbe_volatile=4,
        ecc_dbe_volatile=1,
        xids=(13, 79),
    )
    return gpus


def _families(text: str) -> dict[str, tuple[str, list[Sample]]]:
    return {f.name: (f.type, f.samples) for f in text_string_to_metric_families(text)}


def _by_gpu(samples: list[Sample]) -> dict[str, float]:
    return {s.labels["UUID"]: s.value for s in samples}


def _published(fake_nvml: FakeNvml, backend: NvmlBackend, gpus: list[FakeGpu]) -> DcgmSeries:
    """The series of one sample of ``gpus``, with ``Hostname`` gpu-node-7."""
    fake_nvml.write(gpus, driver_version="550.54.15")
    assert backend.start()
    snapshot = backend.collect()
    assert snapshot.errors == ()
    series = DcgmSeries(host="gpu-node-7")
    series.publish(snapshot)
    return series


def test_dcgm_names_types_labels_and_values_are_what_nvml_was_told(
    fake_nvml: FakeNvml, backend: NvmlBackend
) -> None:
    gpus = _gpus()
    text = _published(fake_nvml, backend, gpus).exposition().decode()
    families = _families(text)

    assert {name: kind for name, (kind, _) in families.items()} == DCGM_TYPES
    assert {f.name for f in FIELDS} == set(DCGM_TYPES)
    for name in DCGM_TYPES:  # dcgm-exporter's names on the wire, counters without _total
        assert f"\n{name}{{" in text
    first, second = gpus
    expected = {
        "DCGM_FI_DEV_SM_CLOCK": lambda g: g.sm_clock_mhz,
        "DCGM_FI_DEV_MEM_CLOCK": lambda g: g.memory_clock_mhz,
        "DCGM_FI_DEV_GPU_TEMP": lambda g: g.temperature_c,
        "DCGM_FI_DEV_POWER_USAGE": lambda g: g.power_mw / 1000,
        "DCGM_FI_DEV_POWER_MGMT_LIMIT": lambda g: g.default_limit_mw / 1000,
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": lambda g: g.energy_mj,
        "DCGM_FI_DEV_GPU_UTIL": lambda g: g.utilization_pct,
        "DCGM_FI_DEV_MEM_COPY_UTIL": lambda g: g.memory_utilization_pct,
        "DCGM_FI_DEV_FB_USED": lambda g: g.memory_used_bytes // MIB,
        "DCGM_FI_DEV_FB_FREE": lambda g: (g.memory_total_bytes - g.memory_used_bytes) // MIB,
        "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL": lambda g: g.ecc_sbe_volatile,
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": lambda g: g.ecc_dbe_volatile,
    }
    for name, value in expected.items():
        assert _by_gpu(families[name][1]) == {g.uuid: value(g) for g in gpus}, name
    # The last XID raised; 0 on a watched GPU that raised none.
    assert _by_gpu(families["DCGM_FI_DEV_XID_ERRORS"][1]) == {first.uuid: 79, second.uuid: 0}

    assert families["DCGM_FI_DEV_GPU_UTIL"][1][0].labels["pci_bus_id"] == "00000000:18:00.0"
    sample = families["DCGM_FI_DEV_GPU_UTIL"][1][1]
    assert sample.labels == {
        "gpu": "1",
        "UUID": second.uuid,
        "pci_bus_id": "00000000:02:00.0",
        "device": "nvidia1",
        "modelName": second.name,
        "Hostname": "gpu-node-7",
        "DCGM_FI_DRIVER_VERSION": "550.54.15",
    }


def test_a_field_nvml_does_not_support_is_left_out_for_that_gpu_only(
    fake_nvml: FakeNvml, backend: NvmlBackend
) -> None:
    gpus = _gpus()
    gpus[1] = dataclasses.replace(
        gpus[1], not_supported=("energy", "ecc", "events", "temp", "power_limit")
    )
    series = _published(fake_nvml, backend, gpus)
    families = _families(series.exposition().decode())

    absent = {
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
        "DCGM_FI_DEV_XID_ERRORS",
        "DCGM_FI_DEV_GPU_TEMP",
        "DCGM_FI_DEV_POWER_MGMT_LIMIT",
    }
    for name, (_, samples) in families.items():
        uuids = set(_by_gpu(samples))
        assert uuids == ({gpus[0].uuid} if name in absent else {g.uuid for g in gpus}), name

    # A field no GPU supports leaves no family at all; a GPU that is gone leaves no series.
    only = gpus[1]
    fake_nvml.write([only])
    series.publish(backend.collect())
    families = _families(series.exposition().decode())
    assert absent.isdisjoint(families)
    assert all(set(_by_gpu(s)) == {only.uuid} for _, s in families.values())


def test_no_gpus_no_dcgm_series() -> None:
    series = DcgmSeries(host="h")
    series.publish(GpuSnapshot(gpus=(), processes=()))
    assert series.exposition() == b""


def _workload(wid: str, state: str = "running", holds: int = 0) -> Workload:
    return Workload(
        workload_id=wid,
        node_id="node-a",
        root_pid=100,
        pids=(100,),
        fingerprint=Fingerprint(
            framework="vllm",
            behaviour=Behaviour.SERVING,
            gpus=(GpuUse("GPU-a", 3 * 2**30), GpuUse("GPU-b", 2**30)),
            model=IdentifiedModel(model_id="m-123"),
        ),
        state=state,
        holds=tuple(Hold(f"c{i}", "pause") for i in range(holds)),
    )


def _scrape(port: int) -> dict[str, tuple[str, list[Sample]]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return _families(resp.read().decode())


def _workload_samples(
    families: dict[str, tuple[str, list[Sample]]], name: str, wids: set[str]
) -> list[Sample]:
    return [s for s in families[name][1] if s.labels.get("workload") in wids]


def test_metrics_endpoint_labels_series_with_the_node_and_drops_workloads_that_left(
    fake_nvml: FakeNvml, backend: NvmlBackend
) -> None:
    dcgm = _published(fake_nvml, backend, _gpus())
    workloads = WorkloadSeries()
    wids = {"wl-dcgm-1", "wl-dcgm-2"}
    workloads.publish([_workload("wl-dcgm-1", holds=2), _workload("wl-dcgm-2")])
    metrics.WORKLOADS.set(2)
    server = TelemetryServer(
        "127.0.0.1:0", lambda: (True, "ok"), labels={"node": "node-a"}, extra=dcgm.exposition
    ).start()
    try:
        families = _scrape(server.port)
        assert families["backstop_agent_workloads"][1][0].labels == {"node": "node-a"}
        assert families["DCGM_FI_DEV_GPU_UTIL"][0] == "gauge"
        assert "node" not in families["DCGM_FI_DEV_GPU_UTIL"][1][0].labels
        info = _workload_samples(families, "backstop_workload_info", wids)
        assert {s.labels["workload"]: (s.labels, s.value) for s in info} == {
            wid: (
                {
                    "workload": wid,
                    "node": "node-a",
                    "model_id": "m-123",
                    "framework": "vllm",
                    "behaviour": "serving",
                    "state": "running",
                },
                1.0,
            )
            for wid in wids
        }
        holds = _workload_samples(families, "backstop_workload_holds", wids)
        assert {s.labels["workload"]: s.value for s in holds} == {"wl-dcgm-1": 2, "wl-dcgm-2": 0}
        memory = _workload_samples(families, "backstop_workload_gpu_memory_bytes", wids)
        sizes = {"GPU-a": 3 * 2**30, "GPU-b": 2**30}
        assert {(s.labels["workload"], s.labels["uuid"]): s.value for s in memory} == {
            (wid, gpu): size for wid in wids for gpu, size in sizes.items()
        }

        # One workload left, the other was paused: no series of the old labels remain.
        workloads.publish([_workload("wl-dcgm-1", state="paused", holds=1)])
        families = _scrape(server.port)
        info = _workload_samples(families, "backstop_workload_info", wids)
        assert [(s.labels["workload"], s.labels["state"]) for s in info] == [
            ("wl-dcgm-1", "paused")
        ]
        holds = _workload_samples(families, "backstop_workload_holds", wids)
        assert [(s.labels["workload"], s.value) for s in holds] == [("wl-dcgm-1", 1)]
        memory = _workload_samples(families, "backstop_workload_gpu_memory_bytes", wids)
        assert {s.labels["workload"] for s in memory} == {"wl-dcgm-1"}
    finally:
        workloads.publish([])
        server.stop()
