"""Per-process GPU use from NVML: the process list with memory, SM share and MIG instances.

Owns what :class:`~backstop.agent.collectors.nvml.NvmlBackend` reports per process on one
GPU. The SM share comes from ``nvmlDeviceGetProcessUtilization``, asked for the samples
taken after the newest one the previous sample saw (NVML's own timestamps, per GPU), so
each share covers the time since the last sample; several samples of one pid are averaged.
NVML answers ``NOT_FOUND`` when no process used the GPU since then: every listed process's
share is then 0. Where MIG is on (``nvmlDeviceGetMigMode``), each process carries the GPU
and compute instance ids NVML lists it with. A reading NVML refuses (``NOT_SUPPORTED`` or
any other error) leaves only its own field ``None``; the process is still reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, TypeVar

import pynvml

from backstop.core.models import GpuProcess

T = TypeVar("T")
NO_INSTANCE = 0xFFFFFFFF
"""The instance id NVML gives a process on a GPU without MIG."""


class Read(Protocol):
    """One NVML reading of a device: the value, or ``None`` when NVML refused it."""

    def __call__(self, what: str, call: Callable[[], T]) -> T | None: ...


class ProcessUse:
    """Per GPU, the newest utilisation sample seen, so each reading covers only new ones."""

    def __init__(self) -> None:
        self._last_seen: dict[str, int] = {}

    def processes(self, uuid: str, handle: object, read: Read) -> list[GpuProcess]:
        """Compute and graphics processes on one GPU, one entry per pid."""
        compute = read(
            "compute processes", lambda: pynvml.nvmlDeviceGetComputeRunningProcesses_v3(handle)
        )
        graphics = read(
            "graphics processes", lambda: pynvml.nvmlDeviceGetGraphicsRunningProcesses_v3(handle)
        )
        listed = [*(compute or ()), *(graphics or ())]
        if not listed:
            return []
        shares = read("process utilization", lambda: self._shares(uuid, handle))
        mig = read("MIG mode", lambda: pynvml.nvmlDeviceGetMigMode(handle))
        mig_on = mig is not None and int(mig[0]) == pynvml.NVML_DEVICE_MIG_ENABLE
        found: dict[int, GpuProcess] = {}
        for info in listed:
            pid = int(info.pid)
            if pid in found and found[pid].used_memory_bytes is not None:
                continue
            used = None if info.usedGpuMemory is None else int(info.usedGpuMemory)
            found[pid] = GpuProcess(
                uuid,
                pid,
                used,
                sm_util_pct=None if shares is None else shares.get(pid, 0),
                gpu_instance_id=_instance(info, "gpuInstanceId") if mig_on else None,
                compute_instance_id=_instance(info, "computeInstanceId") if mig_on else None,
            )
        return list(found.values())

    def forget(self, keep: Iterable[str]) -> None:
        """Drop the timestamps of GPUs not in ``keep``."""
        wanted = set(keep)
        for uuid in self._last_seen.keys() - wanted:
            del self._last_seen[uuid]

    def _shares(self, uuid: str, handle: object) -> dict[int, int]:
        """Mean SM share per pid over the samples since the last call (raises NVMLError)."""
        try:
            samples = pynvml.nvmlDeviceGetProcessUtilization(handle, self._last_seen.get(uuid, 0))
        except pynvml.NVMLError as exc:
            if getattr(exc, "value", None) == pynvml.NVML_ERROR_NOT_FOUND:
                return {}  # no process ran on the GPU since the last sample
            raise
        return self._fold(uuid, samples)

    def _fold(self, uuid: str, samples: Sequence[object]) -> dict[int, int]:
        totals: dict[int, list[int]] = {}
        newest = self._last_seen.get(uuid, 0)
        for sample in samples:
            pid = int(getattr(sample, "pid", 0))
            entry = totals.setdefault(pid, [0, 0])
            entry[0] += min(100, int(getattr(sample, "smUtil", 0)))
            entry[1] += 1
            newest = max(newest, int(getattr(sample, "timeStamp", 0)))
        self._last_seen[uuid] = newest
        return {pid: round(total / count) for pid, (total, count) in totals.items()}


def _instance(info: object, name: str) -> int | None:
    value = getattr(info, name, None)
    if value is None or int(value) == NO_INSTANCE:
        return None
    return int(value)
