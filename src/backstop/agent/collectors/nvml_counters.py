"""NVML readings beyond a GPU sample: PCI bus id, free memory, energy, ECC and the last XID.

These readings feed the agent's DCGM-compatible series (``DCGM_FI_DEV_FB_FREE``,
``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION``, ``DCGM_FI_DEV_ECC_*_VOL_TOTAL``,
``DCGM_FI_DEV_XID_ERRORS``) and are not part of the report sent to the controller. Each
field is ``None`` when NVML does not support it on that GPU, so it is left out rather than
shown as 0. XIDs arrive as NVML events: :class:`XidWatch` owns one event set, registers
every GPU with it as the backend resolves it, and is drained once a sample; the last XID
of a watched GPU is 0 until it raises one. Callers hold the backend's lock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import pynvml

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Reader(Protocol):
    """Reads one field: ``read(what, call)`` is ``call()``, or None when NVML cannot say."""

    def __call__(self, what: str, call: Callable[[], T]) -> T | None: ...


MAX_EVENTS_PER_SAMPLE = 256
"""Events taken off the set per sample; the rest wait for the next one."""


@dataclass(frozen=True, slots=True)
class GpuCounters:
    """One GPU's health counters in one sample (``None``: NVML does not report it)."""

    uuid: str
    pci_bus_id: str = ""
    """e.g. ``00000000:18:00.0``; empty when NVML did not say."""
    memory_free_bytes: int | None = None
    """Framebuffer memory free, as NVML's memory info reports it."""
    energy_mj: int | None = None
    """Energy used since the driver loaded, in millijoules."""
    ecc_sbe_volatile: int | None = None
    """Corrected (single-bit) ECC errors since the driver loaded."""
    ecc_dbe_volatile: int | None = None
    """Uncorrected (double-bit) ECC errors since the driver loaded."""
    last_xid: int | None = None
    """The last XID error seen since the agent started (0: none); None: not watched."""


def read_counters(
    uuid: str, handle: object, read: Reader, memory_free_bytes: int | None, last_xid: int | None
) -> GpuCounters:
    """The counters of the GPU behind ``handle``, each through ``read``."""
    volatile = pynvml.NVML_VOLATILE_ECC
    bus_id = read("PCI info", lambda: _text(pynvml.nvmlDeviceGetPciInfo_v3(handle).busId))
    return GpuCounters(
        uuid=uuid,
        pci_bus_id=bus_id or "",
        memory_free_bytes=memory_free_bytes,
        energy_mj=read("energy", lambda: int(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle))),
        ecc_sbe_volatile=read(
            "corrected ECC errors",
            lambda: int(
                pynvml.nvmlDeviceGetTotalEccErrors(
                    handle, pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, volatile
                )
            ),
        ),
        ecc_dbe_volatile=read(
            "uncorrected ECC errors",
            lambda: int(
                pynvml.nvmlDeviceGetTotalEccErrors(
                    handle, pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, volatile
                )
            ),
        ),
        last_xid=last_xid,
    )


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


class XidWatch:
    """XID error events of every GPU registered with one NVML event set."""

    def __init__(self) -> None:
        self._set: object | None = None
        self._watched: set[str] = set()
        self._last: dict[str, int] = {}

    def open(self) -> None:
        """Create the event set (after ``nvmlInit``); without one no GPU is watched."""
        try:
            self._set = pynvml.nvmlEventSetCreate()
        except pynvml.NVMLError as exc:
            logger.debug("NVML events are not available: %s", exc)
            self._set = None

    def watch(self, handle: object, uuid: str) -> None:
        """Register the GPU for XID events; a GPU that cannot be is simply not watched."""
        if self._set is None:
            return
        try:
            pynvml.nvmlDeviceRegisterEvents(handle, pynvml.nvmlEventTypeXidCriticalError, self._set)
        except pynvml.NVMLError as exc:
            logger.debug("XID events not available on %s: %s", uuid, exc)
            self._watched.discard(uuid)
            return
        self._watched.add(uuid)

    def last(self, uuid: str) -> int | None:
        """The GPU's last XID (0: none yet); None when it is not watched."""
        return self._last.get(uuid, 0) if uuid in self._watched else None

    def drain(self) -> None:
        """Take the pending events off the set without waiting."""
        if self._set is None or not self._watched:
            return
        for _ in range(MAX_EVENTS_PER_SAMPLE):
            try:
                data = pynvml.nvmlEventSetWait_v2(self._set, 0)
                if not int(data.eventType) & pynvml.nvmlEventTypeXidCriticalError:
                    continue
                uuid = str(pynvml.nvmlDeviceGetUUID(data.device))
            except pynvml.NVMLError as exc:
                if int(getattr(exc, "value", 0)) != pynvml.NVML_ERROR_TIMEOUT:
                    logger.debug("NVML event wait failed: %s", exc)
                return
            self._last[uuid] = int(data.eventData)
            logger.warning("GPU %s raised XID %d", uuid, self._last[uuid], extra={"gpu_uuid": uuid})

    def close(self) -> None:
        """Free the event set (before ``nvmlShutdown``)."""
        if self._set is not None:
            try:
                pynvml.nvmlEventSetFree(self._set)
            except pynvml.NVMLError as exc:
                logger.debug("NVML event set free failed: %s", exc)
        self._set = None
        self._watched = set()
