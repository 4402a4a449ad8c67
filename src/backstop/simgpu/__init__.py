"""Simulated GPUs: the NVML test library, built from C, driven by scenario files.

``fake_nvml.c`` (beside this file) is a ``libnvidia-ml.so.1`` that answers the NVML calls the
agent makes from a scenario file (its format is documented at the top of the C file).
This module builds it once per source version into the user's cache, writes scenario
files atomically, reads the power-limit state file, and gives a child process the
environment that makes the real pynvml load it.

In-process use: pynvml opens ``libnvidia-ml.so.1`` by soname, and the dynamic loader
returns an already loaded object with that soname, so :meth:`FakeNvml.preload` (done by
the ``fake_nvml`` fixture) loads the built file by absolute path first. The library reads
``BACKSTOP_FAKE_NVML_SCENARIO`` and ``BACKSTOP_FAKE_NVML_STATE`` on every call, so each
test's fixture points it at that test's files; teardown resets the library's counters.

The test suite uses it to exercise the real pynvml code paths without a GPU, and
``backstop demo`` uses it to show GPU throttling on a machine that has none.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from backstop.core.errors import NotSupported

SOURCE = Path(__file__).parent / "fake_nvml.c"
SONAME = "libnvidia-ml.so.1"
SCENARIO_ENV = "BACKSTOP_FAKE_NVML_SCENARIO"
STATE_ENV = "BACKSTOP_FAKE_NVML_STATE"

FIELDS = frozenset(
    {
        "name",
        "index",
        "util",
        "memory",
        "power",
        "power_limit",
        "default_limit",
        "constraints",
        "set_limit",
        "temp",
        "sm_clock",
        "mem_clock",
        "graphics_clock",
        "processes",
        "graphics_processes",
        "energy",
        "ecc",
        "events",
        "pci",
        "process_util",
        "mig",
    }
)
"""Field names accepted by ``not_supported`` and ``failures`` (see the C file)."""

ERROR_CODES = frozenset(
    {
        "UNINITIALIZED",
        "INVALID_ARGUMENT",
        "NOT_SUPPORTED",
        "NO_PERMISSION",
        "ALREADY_INITIALIZED",
        "NOT_FOUND",
        "INSUFFICIENT_SIZE",
        "INSUFFICIENT_POWER",
        "DRIVER_NOT_LOADED",
        "TIMEOUT",
        "IRQ_ISSUE",
        "LIBRARY_NOT_FOUND",
        "FUNCTION_NOT_FOUND",
        "CORRUPTED_INFOROM",
        "GPU_IS_LOST",
        "RESET_REQUIRED",
        "OPERATING_SYSTEM",
        "LIB_RM_VERSION_MISMATCH",
        "IN_USE",
        "MEMORY",
        "NO_DATA",
        "UNKNOWN",
    }
)
"""NVML error names without their ``NVML_ERROR_`` prefix."""

ERROR_CALLS = frozenset({"init", "count", "driver_version"})
"""Calls that ``FakeNvml.write(errors=...)`` can make fail as a whole."""

H100_NAME = "NVIDIA H100 80GB HBM3"
H100_MEMORY_BYTES = 81559 * 2**20


@dataclass(frozen=True)
class FakeGpu:
    """One GPU of a scenario; units as NVML reports them (mW, bytes, MHz, %)."""

    uuid: str
    name: str = H100_NAME
    utilization_pct: int = 0
    memory_utilization_pct: int = 0
    memory_total_bytes: int = H100_MEMORY_BYTES
    memory_used_bytes: int = 0
    power_mw: int = 100_000
    """Power drawn; NVML reports the smaller of this and the current limit."""
    power_limit_mw: int | None = None
    """Limit in force until one is set; ``None``: the default limit."""
    default_limit_mw: int = 700_000
    min_limit_mw: int = 200_000
    max_limit_mw: int = 700_000
    temperature_c: int = 40
    sm_clock_mhz: int = 1980
    memory_clock_mhz: int = 2619
    pci_bus_id: str | None = None
    """e.g. ``00000000:18:00.0``; ``None``: ``00000000:XX:00.0`` with XX the index + 1."""
    energy_mj: int = 0
    """Energy used since the driver loaded, in mJ."""
    ecc_sbe_volatile: int = 0
    """Corrected (single-bit) ECC errors since the driver loaded."""
    ecc_dbe_volatile: int = 0
    """Uncorrected (double-bit) ECC errors since the driver loaded."""
    xids: tuple[int, ...] = ()
    """XID errors raised, oldest first; each is delivered once to each NVML event set."""
    lost: bool = False
    """Every call on the GPU returns NVML_ERROR_GPU_IS_LOST."""
    no_permission: bool = False
    """Setting the power limit returns NVML_ERROR_NO_PERMISSION."""
    mig: bool = False
    """MIG mode is on: processes report their GPU and compute instance ids."""
    not_supported: tuple[str, ...] = ()
    """Fields that return NVML_ERROR_NOT_SUPPORTED."""
    failures: Mapping[str, str] = field(default_factory=dict)
    """Field -> error name, for other per-field errors."""


@dataclass(frozen=True)
class FakeProcess:
    """A process holding a context on the GPU at ``gpu`` (an index into the GPU list)."""

    gpu: int
    pid: int
    used_memory_bytes: int | None = None
    """``None``: NVML reports the memory as not available."""
    kind: str = "compute"
    """``compute`` or ``graphics``."""
    sm_util_pct: int | None = None
    """SM share of its one utilisation sample; ``None``: NVML has no sample of it."""
    memory_util_pct: int = 0
    sample_ts_us: int | None = None
    """When the sample was taken (NVML's microseconds): returned only to a caller asking
    for samples after an earlier time. ``None``: now, on every call (busy all along)."""
    gpu_instance_id: int | None = None
    """Its MIG GPU instance (reported only while the GPU's MIG mode is on)."""
    compute_instance_id: int | None = None


def default_gpus(count: int = 2) -> list[FakeGpu]:
    """``count`` H100s with distinct, stable UUIDs and distinct, realistic readings."""
    return [
        FakeGpu(
            uuid=f"GPU-{uuid.uuid5(uuid.NAMESPACE_URL, f'backstop-fake-gpu-{i}')}",
            utilization_pct=(37 + 23 * i) % 101,
            memory_utilization_pct=(21 + 17 * i) % 101,
            memory_used_bytes=(20 + 7 * i) * 2**30,
            power_mw=310_000 + 25_000 * i,
            temperature_c=51 + 3 * i,
            sm_clock_mhz=1755 + 15 * i,
            memory_clock_mhz=2619,
        )
        for i in range(count)
    ]


def idle_unless_listed(gpus: Iterable[FakeGpu], processes: Iterable[FakeProcess]) -> list[FakeGpu]:
    """``gpus`` with every one that no process is listed on made idle (0 % and no memory in
    use), as a real idle GPU reads. A GPU busy with nothing listed is what the agent reports
    as unattributed use, so scenarios that do not mean that use this."""
    used = {p.gpu for p in processes}
    return [
        g if i in used else replace(g, utilization_pct=0, memory_used_bytes=0)
        for i, g in enumerate(gpus)
    ]


def cache_root() -> Path:
    """Where built libraries are kept (``$XDG_CACHE_HOME`` or ``~/.cache``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "backstop" / "fake-nvml"


def build_library(source: Path = SOURCE) -> Path:
    """Build ``libnvidia-ml.so.1`` from ``source`` once; return its absolute path.

    The result lives under a directory named by the source's hash, so a changed source
    builds anew and an unchanged one is reused. The build writes a temporary file and
    renames it, so concurrent test processes never see a half-written library.
    """
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    target = cache_root() / digest / SONAME
    if target.is_file():
        return target
    gcc = shutil.which("gcc")
    if gcc is None:
        raise NotSupported("building the NVML test library needs gcc on PATH")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{SONAME}.{os.getpid()}.{uuid.uuid4().hex}"
    try:
        result = subprocess.run(
            [
                gcc,
                "-shared",
                "-fPIC",
                "-O2",
                "-Wall",
                "-Wextra",
                "-fvisibility=hidden",
                "-pthread",
                f"-Wl,-soname,{SONAME}",
                "-o",
                str(tmp),
                str(source),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise NotSupported(f"gcc failed to build the NVML test library:\n{result.stderr}")
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


_loaded: dict[Path, ctypes.CDLL] = {}


def preload(library: Path) -> ctypes.CDLL:
    """Load ``library`` into this process so that ``CDLL("libnvidia-ml.so.1")`` finds it."""
    if library not in _loaded:
        _loaded[library] = ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
    return _loaded[library]


def _word(value: str, what: str) -> str:
    if not value or any(c.isspace() or c in '"=#,:' for c in value):
        raise ValueError(f"{what} {value!r} must be one word without quotes, '=', '#', ',', ':'")
    return value


def _bus_id(value: str) -> str:
    if re.fullmatch(r"[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]", value) is None:
        raise ValueError(f"PCI bus id {value!r} is not DOMAIN:BUS:DEVICE.FUNCTION")
    return value


def _quoted(value: str, what: str) -> str:
    if '"' in value or "\n" in value or "\r" in value:
        raise ValueError(f"{what} {value!r} must not hold quotes or line breaks")
    return f'"{value}"'


def _code(name: str) -> str:
    if name not in ERROR_CODES:
        raise ValueError(f"unknown NVML error {name!r}; one of {sorted(ERROR_CODES)}")
    return name


def _field(name: str) -> str:
    if name not in FIELDS:
        raise ValueError(f"unknown NVML field {name!r}; one of {sorted(FIELDS)}")
    return name


def _gpu_line(index: int, gpu: FakeGpu) -> str:
    """The scenario statement of one GPU."""
    words = [
        f"gpu {index}",
        f"uuid={_word(gpu.uuid, 'uuid')}",
        f"name={_quoted(gpu.name, 'name')}",
        f"util={gpu.utilization_pct}",
        f"mem_util={gpu.memory_utilization_pct}",
        f"mem_total={gpu.memory_total_bytes}",
        f"mem_used={gpu.memory_used_bytes}",
        f"power={gpu.power_mw}",
        f"default_limit={gpu.default_limit_mw}",
        f"min_limit={gpu.min_limit_mw}",
        f"max_limit={gpu.max_limit_mw}",
        f"temp={gpu.temperature_c}",
        f"sm_clock={gpu.sm_clock_mhz}",
        f"mem_clock={gpu.memory_clock_mhz}",
        f"energy={gpu.energy_mj}",
        f"ecc_sbe={gpu.ecc_sbe_volatile}",
        f"ecc_dbe={gpu.ecc_dbe_volatile}",
    ]
    if gpu.pci_bus_id is not None:
        words.append(f"pci_bus_id={_bus_id(gpu.pci_bus_id)}")
    if gpu.xids:
        words.append("xids=" + ",".join(str(int(x)) for x in gpu.xids))
    if gpu.power_limit_mw is not None:
        words.append(f"limit={gpu.power_limit_mw}")
    if gpu.lost:
        words.append("lost=1")
    if gpu.no_permission:
        words.append("no_permission=1")
    if gpu.mig:
        words.append("mig=1")
    if gpu.not_supported:
        words.append("not_supported=" + ",".join(_field(f) for f in gpu.not_supported))
    if gpu.failures:
        words.append("fail=" + ",".join(f"{_field(f)}:{_code(c)}" for f, c in gpu.failures.items()))
    return " ".join(words)


def render_scenario(
    gpus: Iterable[FakeGpu],
    processes: Iterable[FakeProcess] = (),
    errors: Mapping[str, str] | None = None,
    driver_version: str = "550.54.15",
) -> str:
    """The scenario file text for these GPUs, processes and whole-call errors."""
    gpu_list = list(gpus)
    lines = ["# NVML test library scenario", f"driver {_word(driver_version, 'driver')}"]
    for call, code in (errors or {}).items():
        if call not in ERROR_CALLS:
            raise ValueError(f"unknown call {call!r}; one of {sorted(ERROR_CALLS)}")
        lines.append(f"error {call} {_code(code)}")
    lines += [_gpu_line(index, gpu) for index, gpu in enumerate(gpu_list)]
    for proc in processes:
        if not 0 <= proc.gpu < len(gpu_list):
            raise ValueError(f"process {proc.pid} names GPU index {proc.gpu}; no such GPU")
        if proc.kind not in ("compute", "graphics"):
            raise ValueError(f"process kind {proc.kind!r} is not compute or graphics")
        words = [f"proc {proc.gpu}", f"pid={proc.pid}", f"type={proc.kind}"]
        if proc.used_memory_bytes is not None:
            words.append(f"mem={proc.used_memory_bytes}")
        if proc.sm_util_pct is not None:
            words += [
                f"sm={proc.sm_util_pct}",
                f"mem_util={proc.memory_util_pct}",
            ]
            if proc.sample_ts_us is not None:
                words.append(f"ts={proc.sample_ts_us}")
        if proc.gpu_instance_id is not None:
            words.append(f"gi={proc.gpu_instance_id}")
        if proc.compute_instance_id is not None:
            words.append(f"ci={proc.compute_instance_id}")
        lines.append(" ".join(words))
    return "\n".join(lines) + "\n"


class FakeNvml:
    """One test's NVML: a scenario file and a power-limit state file in ``directory``."""

    def __init__(self, directory: Path, library: Path | None = None) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.library_path = library if library is not None else build_library()
        self.scenario_path = directory / "scenario"
        self.state_path = directory / "power-limits"
        self._last_mtime_ns = 0

    def write(
        self,
        gpus: Iterable[FakeGpu],
        processes: Iterable[FakeProcess] = (),
        errors: Mapping[str, str] | None = None,
        driver_version: str = "550.54.15",
    ) -> None:
        """Replace the scenario atomically; the library sees it on its next call.

        ``errors`` maps a whole call (``init``, ``count``, ``driver_version``) to the
        NVML error it returns, e.g. ``{"init": "DRIVER_NOT_LOADED"}``. Each write gets
        a strictly newer mtime, so two writes within one clock tick are both seen.
        """
        text = render_scenario(gpus, processes, errors, driver_version)
        fd, tmp_name = tempfile.mkstemp(prefix=".scenario.", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            mtime_ns = max(time.time_ns(), self._last_mtime_ns + 1_000)
            os.utime(tmp_name, ns=(mtime_ns, mtime_ns))
            self._last_mtime_ns = mtime_ns
            os.replace(tmp_name, self.scenario_path)
        except BaseException:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
            raise

    def remove(self) -> None:
        """Delete the scenario: the driver looks unloaded from now on."""
        self.scenario_path.unlink(missing_ok=True)

    def power_limits(self) -> dict[str, int]:
        """Every limit set through NVML so far, by GPU UUID, in mW."""
        try:
            text = self.state_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        limits: dict[str, int] = {}
        for line in text.splitlines():
            gpu_uuid, limit = line.split()
            limits[gpu_uuid] = int(limit)
        return limits

    def power_limit(self, gpu_uuid: str) -> int:
        """The limit last set on ``gpu_uuid`` through NVML (KeyError if none was set)."""
        return self.power_limits()[gpu_uuid]

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for a child process whose pynvml should load this library."""
        result = dict(os.environ if base is None else base)
        old = result.get("LD_LIBRARY_PATH", "")
        lib_dir = str(self.library_path.parent)
        result["LD_LIBRARY_PATH"] = f"{lib_dir}:{old}" if old else lib_dir
        result[SCENARIO_ENV] = str(self.scenario_path)
        result[STATE_ENV] = str(self.state_path)
        return result

    def preload(self) -> None:
        """Make this process's pynvml use the library (see the module docstring)."""
        preload(self.library_path)

    def reset(self) -> None:
        """Forget the library's init count, parsed scenario and in-memory limits."""
        preload(self.library_path).fakeNvmlReset()
