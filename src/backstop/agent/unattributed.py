"""GPU use the agent cannot attribute to one of its processes, reported instead of dropped.

NVML lists every process holding a GPU context, by the pid the driver knows. Discovery turns
those it finds in its own process table into workloads; the rest used to vanish. Each is now a
workload of its own, marked ``unattributed`` with the reason:

- the pid is not in the agent's view: another PID namespace (an agent without the host's pid
  namespace), or the process is gone;
- the pid is outside ``--cgroup-prefix``: the agent sees it but never acts on it;
- a GPU shows memory in use (over :data:`BUSY_MEMORY_BYTES`) or utilisation above zero while
  NVML lists no process on it at all.

Such a workload carries its GPUs with the memory and SM share NVML reports, and the label
``backstop.io/kind=unattributed`` (so ``--selector backstop.io/kind=unattributed`` scopes
them). Its pid is the number NVML reports, which may name another process in the agent's
namespace, so nothing ever signals it: only its GPU can be capped (``throttle``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from types import MappingProxyType

from backstop.agent import metrics
from backstop.agent.workload_record import LABEL_KIND, summed_gpu_use
from backstop.core.ids import workload_id
from backstop.core.models import Fingerprint, GpuProcess, GpuSample, GpuUse, Workload
from backstop.core.scope import UNATTRIBUTED

KIND = UNATTRIBUTED
BUSY_MEMORY_BYTES = 1 << 30
"""Memory in use on a GPU with no process listed above which the GPU is flagged (an idle GPU
shows some memory in use by the driver itself)."""
EXIT_GRACE_S = 30.0
"""How long a pid that left a workload may stay listed by NVML before it is unattributed."""
_LABELS = MappingProxyType({LABEL_KIND: KIND})


def unattributed_workloads(
    node_id: str,
    gpus: Sequence[GpuSample],
    gpu_processes: Sequence[GpuProcess],
    workloads: Sequence[Workload],
    *,
    visible: Collection[int],
    in_scope: Collection[int],
    exiting: Collection[int] = (),
) -> list[Workload]:
    """The GPU use ``workloads`` leave unexplained: ``visible`` are the pids in the agent's
    process table, ``in_scope`` those of them inside ``--cgroup-prefix``; ``exiting`` pids
    were a workload's moments ago (NVML may list a context a little after its process
    exits), so they are not reported unless they stay listed."""
    attributed = {pid for w in workloads for pid in w.pids} | set(exiting)
    names = {g.uuid: g.name for g in gpus}
    by_pid: dict[int, list[GpuProcess]] = {}
    for gp in gpu_processes:
        if gp.pid not in attributed:
            by_pid.setdefault(gp.pid, []).append(gp)
    found = [
        _process(node_id, pid, uses, names, _why(pid, visible, in_scope))
        for pid, uses in sorted(by_pid.items())
    ]
    listed = {gp.gpu_uuid for gp in gpu_processes}
    found += [_busy(node_id, g) for g in gpus if g.uuid not in listed and _busy_alone(g)]
    _publish(gpus, found)
    return found


def _publish(gpus: Sequence[GpuSample], found: Sequence[Workload]) -> None:
    """Every GPU's unattributed memory (0 when all is attributed), and the count."""
    memory = dict.fromkeys((g.uuid for g in gpus), 0)
    for w in found:
        for use in w.fingerprint.gpus:
            memory[use.gpu_uuid] = memory.get(use.gpu_uuid, 0) + use.used_memory_bytes
    for uuid, used in memory.items():
        metrics.UNATTRIBUTED_GPU_MEMORY.labels(uuid=uuid).set(used)
    metrics.UNATTRIBUTED_WORKLOADS.set(len(found))


class RecentlyAttributed:
    """The pids that were part of a workload in the last ``grace_s`` seconds."""

    def __init__(self, grace_s: float = EXIT_GRACE_S) -> None:
        self._grace_s = grace_s
        self._seen: dict[int, float] = {}

    def exiting(
        self, workloads: Sequence[Workload], visible: Collection[int], now: float
    ) -> set[int]:
        """Note the pids of ``workloads``; those seen within the grace and now gone."""
        for w in workloads:
            for pid in w.pids:
                self._seen[pid] = now
        for pid in [p for p, at in self._seen.items() if now - at > self._grace_s]:
            del self._seen[pid]
        return {pid for pid in self._seen if pid not in visible}


def plausible(gpu_processes: Sequence[GpuProcess]) -> list[GpuProcess]:
    """The GPU processes discovery may attribute: not pid 0 or 1, which in the agent's view are
    never a GPU process (init here: NVML's number is another PID namespace's)."""
    return [gp for gp in gpu_processes if gp.pid > 1]


def _why(pid: int, visible: Collection[int], in_scope: Collection[int]) -> str:
    if pid <= 1:
        return f"pid {pid} here is init, not a GPU process (another PID namespace's number)"
    if pid not in visible:
        return "no such process in the agent's view (another PID namespace, or gone)"
    if pid not in in_scope:
        return "outside --cgroup-prefix, which the agent never acts on"
    return "not part of any workload the agent found"


def _process(
    node_id: str, pid: int, uses: list[GpuProcess], names: dict[str, str], why: str
) -> Workload:
    gpus = summed_gpu_use(uses)
    where = ", ".join(f"{names.get(g.gpu_uuid, 'GPU')} {g.gpu_uuid} ({_use(g)})" for g in gpus)
    return _record(
        workload_id(node_id, pid, 0.0, f"{KIND}:{pid}"),
        node_id,
        pid,
        gpus,
        f"NVML lists pid {pid} on {where}: {why}",
    )


def _use(gpu: GpuUse) -> str:
    sm = "" if gpu.sm_util_pct is None else f", {gpu.sm_util_pct}% SM"
    return f"{gpu.used_memory_bytes >> 20} MiB{sm}"


def _busy_alone(gpu: GpuSample) -> bool:
    return (gpu.memory_used_bytes or 0) > BUSY_MEMORY_BYTES or (gpu.utilization_pct or 0) > 0


def _busy(node_id: str, gpu: GpuSample) -> Workload:
    used = gpu.memory_used_bytes or 0
    util = "unknown" if gpu.utilization_pct is None else f"{gpu.utilization_pct}%"
    return _record(
        workload_id(node_id, 0, 0.0, f"{KIND}:{gpu.uuid}"),
        node_id,
        0,
        (GpuUse(gpu.uuid, used),),
        f"{gpu.name} {gpu.uuid} shows {used >> 20} MiB in use and {util} utilisation "
        "with no process listed",
    )


def _record(wid: str, node_id: str, pid: int, gpus: tuple[GpuUse, ...], why: str) -> Workload:
    return Workload(
        workload_id=wid,
        node_id=node_id,
        root_pid=pid,
        pids=(),
        fingerprint=Fingerprint(gpus=gpus),
        labels=_LABELS,
        unattributed=why,
    )
