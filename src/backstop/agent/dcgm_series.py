"""DCGM-compatible GPU series: dcgm-exporter's metric names, types, units and labels.

Owns the ``DCGM_FI_*`` part of the agent's ``/metrics``, so Grafana dashboards built for
NVIDIA's dcgm-exporter work on a Backstop node unchanged. The sampler publishes each NVML
snapshot here; a scrape renders the latest one, so a GPU that left the node leaves no stale
series. A field NVML does not support on a GPU is left out for that GPU, never shown as 0.
The text is rendered here, not through :mod:`backstop.telemetry.series`, because counters
there end in ``_total`` and dcgm-exporter's counters keep their DCGM names.

Labels, as dcgm-exporter sets them: ``gpu`` (NVML index), ``UUID``, ``pci_bus_id``,
``device`` (``nvidia<index>``), ``modelName``, ``Hostname`` (``$NODE_NAME``, else the host name) and
``DCGM_FI_DRIVER_VERSION``. ``pod``, ``namespace`` and ``container`` are left off, as
dcgm-exporter leaves them off a GPU it has not attributed to a pod.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from backstop.agent.collectors.nvml import GpuSnapshot
from backstop.agent.collectors.nvml_counters import GpuCounters
from backstop.core.models import GpuSample
from backstop.telemetry.series import Sample, family_lines

MIB = 2**20

COUNTERS = """
# dcgm-exporter's counters file format: DCGM field, Prometheus type, help message; then
# where the value comes from (a GpuSample or GpuCounters field) and the unit it is read in.
DCGM_FI_DEV_SM_CLOCK, gauge, SM clock frequency (in MHz)., sm_clock_mhz, MHz
DCGM_FI_DEV_MEM_CLOCK, gauge, Memory clock frequency (in MHz)., memory_clock_mhz, MHz
DCGM_FI_DEV_GPU_TEMP, gauge, GPU temperature (in C)., temperature_c, C
DCGM_FI_DEV_POWER_USAGE, gauge, Power draw (in W)., power_mw, mW
DCGM_FI_DEV_POWER_MGMT_LIMIT, gauge, Power management limit (in W)., power_limit_mw, mW
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION, counter, Total energy consumption since boot (in mJ)., energy_mj, mJ
DCGM_FI_DEV_GPU_UTIL, gauge, GPU utilization (in %)., utilization_pct, %
DCGM_FI_DEV_MEM_COPY_UTIL, gauge, Memory utilization (in %)., memory_utilization_pct, %
DCGM_FI_DEV_XID_ERRORS, gauge, Value of the last XID error encountered., last_xid, XID
DCGM_FI_DEV_FB_FREE, gauge, Framebuffer memory free (in MiB)., memory_free_bytes, B
DCGM_FI_DEV_FB_USED, gauge, Framebuffer memory used (in MiB)., memory_used_bytes, B
DCGM_FI_DEV_ECC_SBE_VOL_TOTAL, counter, Total number of single-bit volatile ECC errors., ecc_sbe_volatile, errors
DCGM_FI_DEV_ECC_DBE_VOL_TOTAL, counter, Total number of double-bit volatile ECC errors., ecc_dbe_volatile, errors
"""  # noqa: E501 - one counter a line, as in dcgm-exporter's file

_CONVERT: dict[str, Callable[[int], float | int]] = {
    "mW": lambda v: v / 1000,  # DCGM reports watts
    "B": lambda v: v // MIB,  # DCGM reports whole MiB
}


@dataclass(frozen=True, slots=True)
class DcgmField:
    """One dcgm-exporter metric (a line of :data:`COUNTERS`)."""

    name: str
    kind: str
    """``gauge`` or ``counter``, as in dcgm-exporter's default-counters.csv."""
    help: str
    source: str
    """The ``GpuSample`` or ``GpuCounters`` field holding the reading."""
    unit: str
    """The unit of ``source``; readings in mW and bytes are converted to W and MiB."""

    def value(self, sample: GpuSample, counters: GpuCounters) -> float | int | None:
        """This metric's value for one GPU; None when NVML did not report it."""
        holder = sample if hasattr(sample, self.source) else counters
        raw: int | None = getattr(holder, self.source)
        if raw is None:
            return None
        convert = _CONVERT.get(self.unit)
        return raw if convert is None else convert(raw)


def _fields(text: str) -> tuple[DcgmField, ...]:
    rows = [line.split(",") for line in text.splitlines() if line and not line.startswith("#")]
    return tuple(DcgmField(*(cell.strip() for cell in row)) for row in rows)


FIELDS = _fields(COUNTERS)
"""The DCGM series, in dcgm-exporter's order."""


def hostname() -> str:
    """The ``Hostname`` label: ``$NODE_NAME`` when set (as in Kubernetes), else the host name."""
    return os.environ.get("NODE_NAME") or socket.gethostname()


def render(
    gpus: Sequence[GpuSample],
    counters: Sequence[GpuCounters],
    host: str,
    driver_version: str = "",
) -> str:
    """The exposition text of ``gpus`` (empty without GPUs); families without a value
    on any GPU are left out whole."""
    by_uuid = {c.uuid: c for c in counters}
    rows = []
    for g in gpus:
        c = by_uuid.get(g.uuid, GpuCounters(g.uuid))
        labels = {
            "gpu": str(g.index),
            "UUID": g.uuid,
            "pci_bus_id": c.pci_bus_id,
            "device": f"nvidia{g.index}",
            "modelName": g.name,
            "Hostname": host,
            "DCGM_FI_DRIVER_VERSION": driver_version,
        }
        rows.append((g, c, tuple((k, v) for k, v in labels.items() if v)))
    out: list[str] = []
    for f in FIELDS:
        samples: list[Sample] = [
            (f.name, pairs, value) for g, c, pairs in rows if (value := f.value(g, c)) is not None
        ]
        if samples:
            out += family_lines(f.name, f.kind, f.help, samples, {})
    return "".join(out)


class DcgmSeries:
    """The latest published GPU snapshot, rendered on each scrape (thread-safe)."""

    def __init__(self, host: str | None = None) -> None:
        """``host``: the ``Hostname`` label (default: :func:`hostname`)."""
        self._lock = threading.Lock()
        self._text = ""
        self._host = host if host is not None else hostname()

    def publish(self, snapshot: GpuSnapshot) -> None:
        """Replace the series with this snapshot's; GPUs not in it disappear."""
        text = render(snapshot.gpus, snapshot.counters, self._host, snapshot.driver_version)
        with self._lock:
            self._text = text

    def exposition(self) -> bytes:
        """The series as Prometheus text."""
        with self._lock:
            return self._text.encode()


SERIES = DcgmSeries()
"""The agent's DCGM-compatible series, published by the sampler, served on ``/metrics``."""
