"""NVML backend: one NVML session per process, GPU samples, GPU processes and power limits.

The agent's only door to NVML (through pynvml). ``start()`` initialises NVML once;
when the library or the driver is missing it logs one warning and returns False, and
the daemon runs on without a GPU section. ``collect()`` never fails for one bad GPU: a
field NVML does not support is ``None``, a lost GPU is left out and named in
``GpuSnapshot.errors``. It raises :class:`CollectorError` only when NVML as a whole
fails. Handles are resolved once and cached by UUID; they are resolved again when the
GPU count changes or a GPU was lost. Per-process use (memory, SM share, MIG instances) is
:mod:`~backstop.agent.collectors.nvml_process_use`'s.

Errors::

    collect()          CollectorError   NVML as a whole failed this sample
    power_limits()     NotFound         no GPU with that UUID on this node
    set_power_limit()  NotSupported     NVML missing, or the GPU cannot cap power
                       ActuationError   NVML refused (invalid limit, no permission, lost)
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import pynvml

from backstop.agent.collectors.nvml_counters import GpuCounters, XidWatch, read_counters
from backstop.agent.collectors.nvml_process_use import ProcessUse
from backstop.core.errors import (
    ActuationError,
    CollectorError,
    InvalidInput,
    NotFound,
    NotSupported,
    Unavailable,
)
from backstop.core.models import GpuProcess, GpuSample

logger = logging.getLogger(__name__)

T = TypeVar("T")

_WHOLE_FAILURES = frozenset(
    {
        pynvml.NVML_ERROR_UNINITIALIZED,
        pynvml.NVML_ERROR_DRIVER_NOT_LOADED,
        pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH,
        pynvml.NVML_ERROR_LIBRARY_NOT_FOUND,
    }
)
"""Codes that mean NVML itself is unusable, not one GPU or one field."""

_UNSUPPORTED = frozenset({pynvml.NVML_ERROR_NOT_SUPPORTED, pynvml.NVML_ERROR_FUNCTION_NOT_FOUND})
"""Codes that mean "this GPU or driver has no such reading"; the field is None, quietly."""


@dataclass(frozen=True, slots=True)
class GpuSnapshot:
    """Every GPU and GPU process NVML reported in one sample."""

    gpus: tuple[GpuSample, ...]
    processes: tuple[GpuProcess, ...]
    errors: tuple[str, ...] = ()
    """Per-GPU problems, e.g. ``"GPU-x: GPU is lost"``; the sample is still valid."""
    counters: tuple[GpuCounters, ...] = ()
    """Health counters of the GPUs in ``gpus``, in the same order."""
    driver_version: str = ""
    """The NVIDIA driver version NVML reported at start (empty if it did not say)."""


@dataclass(frozen=True, slots=True)
class PowerLimits:
    """A GPU's power management limits, in milliwatts."""

    current_mw: int
    default_mw: int
    min_mw: int
    max_mw: int


@dataclass(frozen=True, slots=True)
class _Device:
    index: int
    uuid: str
    name: str
    handle: object


class _GpuLost(Exception):
    """The GPU fell off the bus during a sample (internal)."""


def _nvml_code(exc: pynvml.NVMLError) -> int:
    return int(getattr(exc, "value", pynvml.NVML_ERROR_UNKNOWN))


class NvmlBackend:
    """NVML behind a small interface, safe to share between the sampler and the actuators."""

    name = "nvml"

    def __init__(self, library_path: str | None = None) -> None:
        """``library_path``: absolute path of a ``libnvidia-ml.so.1`` to use instead of the
        one the dynamic loader finds; it must be given before anything in this process
        has loaded NVML."""
        self._library_path = library_path
        self._lock = threading.Lock()
        self._started = False
        self._driver = ""
        self._slots: list[_Device | None] = []
        self._by_uuid: dict[str, _Device] = {}
        self._last_uuid: dict[int, str] = {}
        self._xids = XidWatch()
        self._process_use = ProcessUse()

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> bool:
        """Initialise NVML; False (after one warning) when it is not usable here."""
        with self._lock:
            if self._started:
                return True
            if self._library_path is not None:
                try:
                    # Loaded first, the file answers pynvml's CDLL("libnvidia-ml.so.1").
                    ctypes.CDLL(self._library_path, mode=ctypes.RTLD_GLOBAL)
                except OSError as exc:
                    logger.warning(
                        "NVML library %s cannot be loaded (%s); running without GPU data",
                        self._library_path,
                        exc,
                    )
                    return False
            try:
                pynvml.nvmlInit()
            except pynvml.NVMLError as exc:
                logger.warning("NVML is not available (%s); running without GPU data", exc)
                return False
            self._started = True
            self._xids.open()
            try:
                self._driver = str(pynvml.nvmlSystemGetDriverVersion())
            except pynvml.NVMLError as exc:
                logger.warning("NVML did not report the driver version: %s", exc)
            try:
                self._resize(self._count())
                for index in range(len(self._slots)):
                    self._resolve(index, [])
            except CollectorError as exc:
                logger.warning("NVML started but cannot enumerate GPUs: %s", exc)
            logger.info(
                "NVML started: driver %s, %d GPUs", self._driver or "unknown", len(self._slots)
            )
            return True

    @property
    def available(self) -> bool:
        """Whether ``start()`` succeeded and ``close()`` has not been called."""
        return self._started

    def driver_version(self) -> str:
        """The NVIDIA driver version, e.g. ``550.54.15`` (empty if NVML did not say)."""
        if not self._started:
            raise Unavailable("NVML is not started")
        return self._driver

    def close(self) -> None:
        """Shut NVML down for this backend; safe to call twice."""
        with self._lock:
            if not self._started:
                return
            self._started = False
            self._slots = []
            self._by_uuid = {}
            self._xids.close()
            try:
                pynvml.nvmlShutdown()
            except pynvml.NVMLError as exc:
                logger.debug("NVML shutdown failed: %s", exc)

    # -- sampling -------------------------------------------------------------

    def collect(self) -> GpuSnapshot:
        """Sample every GPU and its processes; one bad GPU never fails the sample."""
        with self._lock:
            if not self._started:
                raise CollectorError("NVML is not started")
            self._resize(self._count())
            gpus: list[GpuSample] = []
            counters: list[GpuCounters] = []
            processes: list[GpuProcess] = []
            errors: list[str] = []
            self._xids.drain()
            for index in range(len(self._slots)):
                device = self._slots[index] or self._resolve(index, errors)
                if device is None:
                    continue
                try:
                    sample, health = self._sample(device, errors)
                    gpu_processes = self._processes(device, errors)
                except _GpuLost as exc:
                    errors.append(f"{device.uuid}: {exc}")
                    self._forget(index)
                    continue
                gpus.append(sample)
                counters.append(health)
                processes.extend(gpu_processes)
            return GpuSnapshot(
                tuple(gpus), tuple(processes), tuple(errors), tuple(counters), self._driver
            )

    def _sample(self, device: _Device, errors: list[str]) -> tuple[GpuSample, GpuCounters]:
        handle = device.handle

        def read(what: str, call: Callable[[], T]) -> T | None:
            return self._read(device, what, call, errors)

        utilization = read("utilization", lambda: pynvml.nvmlDeviceGetUtilizationRates(handle))
        memory = read("memory", lambda: pynvml.nvmlDeviceGetMemoryInfo(handle))
        free = None if memory is None else int(memory.free)
        counters = read_counters(device.uuid, handle, read, free, self._xids.last(device.uuid))
        sample = GpuSample(
            index=device.index,
            uuid=device.uuid,
            name=device.name,
            utilization_pct=None if utilization is None else int(utilization.gpu),
            memory_utilization_pct=None if utilization is None else int(utilization.memory),
            memory_used_bytes=None if memory is None else int(memory.used),
            memory_total_bytes=None if memory is None else int(memory.total),
            power_mw=read("power", lambda: int(pynvml.nvmlDeviceGetPowerUsage(handle))),
            power_limit_mw=read(
                "power limit", lambda: int(pynvml.nvmlDeviceGetPowerManagementLimit(handle))
            ),
            power_default_limit_mw=read(
                "default power limit",
                lambda: int(pynvml.nvmlDeviceGetPowerManagementDefaultLimit(handle)),
            ),
            temperature_c=read(
                "temperature",
                lambda: int(pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)),
            ),
            sm_clock_mhz=read(
                "SM clock", lambda: int(pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM))
            ),
            memory_clock_mhz=read(
                "memory clock",
                lambda: int(pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM)),
            ),
        )
        return sample, counters

    def _processes(self, device: _Device, errors: list[str]) -> list[GpuProcess]:
        """Compute and graphics processes on one GPU, one entry per PID."""

        def read(what: str, call: Callable[[], T]) -> T | None:
            return self._read(device, what, call, errors)

        return self._process_use.processes(device.uuid, device.handle, read)

    def _read(
        self, device: _Device, what: str, call: Callable[[], T], errors: list[str]
    ) -> T | None:
        """One NVML reading; None when unsupported or failed (failures also go to errors)."""
        try:
            return call()
        except pynvml.NVMLError as exc:
            code = _nvml_code(exc)
            if code == pynvml.NVML_ERROR_GPU_IS_LOST:
                raise _GpuLost(str(exc)) from exc
            if code in _WHOLE_FAILURES:
                raise CollectorError(f"NVML failed: {exc}") from exc
            if code in _UNSUPPORTED:
                logger.debug("%s not supported on %s", what, device.uuid)
            else:
                errors.append(f"{device.uuid}: {what}: {exc}")
            return None

    # -- power limits ---------------------------------------------------------

    def power_limits(self, gpu_uuid: str) -> PowerLimits:
        """Current, default, minimum and maximum power limit of one GPU."""
        with self._lock:
            device = self._device(gpu_uuid)
            handle = device.handle
            try:
                current = int(pynvml.nvmlDeviceGetPowerManagementLimit(handle))
                default = int(pynvml.nvmlDeviceGetPowerManagementDefaultLimit(handle))
                low, high = pynvml.nvmlDeviceGetPowerManagementLimitConstraints(handle)
            except pynvml.NVMLError as exc:
                raise self._power_error(device, "cannot read power limits", exc) from exc
            return PowerLimits(current, default, int(low), int(high))

    def set_power_limit(self, gpu_uuid: str, limit_mw: int) -> None:
        """Set one GPU's power management limit; NVML's own refusal is surfaced."""
        if isinstance(limit_mw, bool) or not isinstance(limit_mw, int) or limit_mw <= 0:
            raise InvalidInput(f"power limit must be a positive number of mW, not {limit_mw!r}")
        with self._lock:
            device = self._device(gpu_uuid)
            try:
                pynvml.nvmlDeviceSetPowerManagementLimit(device.handle, limit_mw)
            except pynvml.NVMLError as exc:
                raise self._power_error(
                    device, f"cannot set power limit to {limit_mw} mW", exc
                ) from exc
        logger.info(
            "GPU %s power limit set to %d mW",
            gpu_uuid,
            limit_mw,
            extra={"gpu_uuid": gpu_uuid},
        )

    def _power_error(self, device: _Device, doing: str, exc: pynvml.NVMLError) -> ActuationError:
        code = _nvml_code(exc)
        message = f"{device.uuid}: {doing}: {exc}"
        if code == pynvml.NVML_ERROR_GPU_IS_LOST:
            self._forget(device.index)
        if code in _UNSUPPORTED:
            return NotSupported(message)
        return ActuationError(message)

    # -- handles --------------------------------------------------------------

    def _count(self) -> int:
        try:
            return int(pynvml.nvmlDeviceGetCount())
        except pynvml.NVMLError as exc:
            raise CollectorError(f"NVML cannot count GPUs: {exc}") from exc

    def _resize(self, count: int) -> None:
        """Drop every cached handle when the GPU count changed."""
        if count == len(self._slots):
            return
        if self._slots:
            logger.info("GPU count changed from %d to %d", len(self._slots), count)
        self._slots = [None] * count
        self._by_uuid = {}
        self._process_use.forget(())

    def _resolve(self, index: int, errors: list[str]) -> _Device | None:
        """Handle, UUID and name of the GPU at ``index``; None (and an error) if unusable."""
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            gpu_uuid = str(pynvml.nvmlDeviceGetUUID(handle))
        except pynvml.NVMLError as exc:
            if _nvml_code(exc) in _WHOLE_FAILURES:
                raise CollectorError(f"NVML failed: {exc}") from exc
            errors.append(f"{self._last_uuid.get(index, f'GPU {index}')}: {exc}")
            return None
        try:
            name = str(pynvml.nvmlDeviceGetName(handle))
        except pynvml.NVMLError as exc:
            logger.debug("GPU %s has no name: %s", gpu_uuid, exc, extra={"gpu_uuid": gpu_uuid})
            name = ""
        device = _Device(index=index, uuid=gpu_uuid, name=name, handle=handle)
        self._slots[index] = device
        self._by_uuid[gpu_uuid] = device
        self._last_uuid[index] = gpu_uuid
        self._xids.watch(handle, gpu_uuid)
        return device

    def _forget(self, index: int) -> None:
        """Resolve the GPU at ``index`` again next time (it was lost)."""
        if index < len(self._slots) and (device := self._slots[index]) is not None:
            self._by_uuid.pop(device.uuid, None)
            self._slots[index] = None

    def _device(self, gpu_uuid: str) -> _Device:
        """The cached device for ``gpu_uuid``, resolving handles again if needed."""
        if not self._started:
            raise NotSupported("NVML is not available on this node")
        device = self._by_uuid.get(gpu_uuid)
        if device is not None:
            return device
        try:
            self._resize(self._count())
            for index, slot in enumerate(self._slots):
                if slot is None:
                    self._resolve(index, [])
        except CollectorError as exc:
            raise ActuationError(f"{gpu_uuid}: {exc.message}") from exc
        device = self._by_uuid.get(gpu_uuid)
        if device is not None:
            return device
        # Not enumerable right now: ask NVML directly, to tell "no such GPU" from "lost".
        try:
            handle = pynvml.nvmlDeviceGetHandleByUUID(gpu_uuid)
            index = int(pynvml.nvmlDeviceGetIndex(handle))
        except pynvml.NVMLError as exc:
            if _nvml_code(exc) == pynvml.NVML_ERROR_NOT_FOUND:
                raise NotFound(f"no GPU {gpu_uuid} on this node") from exc
            raise ActuationError(f"{gpu_uuid}: {exc}") from exc
        return _Device(index=index, uuid=gpu_uuid, name="", handle=handle)
