"""Pause, resume, terminate and CPU-throttle one workload's processes on this node.

A workload with a cgroup of its own (see :meth:`CgroupV2.placement`) is paused with the
cgroup v2 freezer and capped with ``cpu.max``; any other is paused with SIGSTOP of its
process tree and is not CPU-capped, since that would cap its neighbours too. Every call
is idempotent, returns an :class:`~backstop.agent.actuators.results.ActuationResult`
and raises only :class:`~backstop.core.errors.InvalidInput` for a bad parameter.
Calls block (terminate for up to its grace period): run them from the agent's single
enforcement queue.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from backstop.agent.actuators.cgroup import CgroupV2, CpuMax, Placement
from backstop.agent.actuators.proctree import (
    PidReused,
    ProcessGone,
    ProcessRef,
    ProcStat,
    SignalGuard,
    read_stat,
    ref_for,
    tree,
)
from backstop.agent.actuators.results import ActuationResult, Mechanism, Outcome, Reply
from backstop.agent.actuators.signals import TerminateResult, TreeSignaller
from backstop.core.errors import ActuationError, InvalidInput, NotFound, NotSupported
from backstop.core.models import ActionParams, Workload

__all__ = ["ActuationResult", "Mechanism", "Outcome", "ProcessActuator"]

logger = logging.getLogger(__name__)

PAUSED_KEEPS = (
    "processes keep their host memory, GPU memory and open sockets; GPU work already "
    "queued runs to completion; clients may time out"
)
TERMINATED_LEAVES = (
    "the processes are gone and the driver frees their GPU memory; a supervisor "
    "(systemd, kubelet, a container runtime) may start the workload again"
)


@dataclass(frozen=True, slots=True)
class _Target:
    """A workload resolved against the live system, with the reply to build its result."""

    reply: Reply
    root: ProcessRef
    members: tuple[ProcStat, ...]
    """The root and its living descendants, parents first."""
    placement: Placement | None
    no_placement: str
    """Why there is no placement (no cgroup2 mount, no 0:: line)."""
    strays: tuple[int, ...]
    """Pids of the last report that are alive but outside the tree: left alone."""

    @property
    def pids(self) -> tuple[int, ...]:
        return tuple(sorted(m.pid for m in self.members))

    @property
    def dedicated(self) -> Placement | None:
        return self.placement if self.placement and self.placement.dedicated else None

    def why_shared(self) -> str:
        return self.placement.reason if self.placement else self.no_placement

    def note(self, detail: str) -> str:
        """``detail`` plus a word on the strays, if any."""
        if not self.strays:
            return detail
        return f"{detail}; pids {list(self.strays)} left the tree and were left alone"


class ProcessActuator:
    """Applies pause, resume, terminate and CPU throttle to workloads on this host."""

    def __init__(
        self,
        *,
        proc_root: Path = Path("/proc"),
        cgroup_root: Path | None = None,
        agent_pid: int | None = None,
        freeze_timeout_s: float = 5.0,
        settle_timeout_s: float = 2.0,
        kill_timeout_s: float = 5.0,
        default_grace_s: float = ActionParams.DEFAULT_GRACE_S,
    ) -> None:
        """``cgroup_root`` is the cgroup2 mount; by default it is found from mountinfo."""
        self.proc_root = proc_root
        self.agent_pid = os.getpid() if agent_pid is None else agent_pid
        self.freeze_timeout_s = freeze_timeout_s
        self.kill_timeout_s = kill_timeout_s
        self.default_grace_s = default_grace_s
        self.signals = TreeSignaller(
            proc_root=proc_root,
            guard=SignalGuard(agent_pid=self.agent_pid, proc_root=proc_root),
            settle_timeout_s=settle_timeout_s,
            kill_timeout_s=kill_timeout_s,
        )
        self.cgroups: CgroupV2 | None = None
        self._no_cgroups = ""
        if cgroup_root is not None:
            self.cgroups = CgroupV2(cgroup_root, proc_root=proc_root)
            return
        try:
            self.cgroups = CgroupV2.discover(proc_root=proc_root)
        except NotSupported as exc:
            self._no_cgroups = exc.message
            logger.info("cgroup v2 unavailable, pause falls back to SIGSTOP: %s", exc.message)

    @property
    def mechanisms(self) -> tuple[str, ...]:
        """The mechanisms this host offers, for the node's capabilities."""
        found = [Mechanism.SIGSTOP, Mechanism.SIGCONT, Mechanism.SIGTERM_SIGKILL]
        offered = self.cgroups.interfaces() if self.cgroups is not None else frozenset()
        found += [
            m
            for m in (Mechanism.CGROUP_FREEZE, Mechanism.CGROUP_KILL, Mechanism.CPU_MAX)
            if m.value in offered
        ]
        return tuple(m.value for m in found)

    # -- public actions --------------------------------------------------------------------

    def pause(self, workload: Workload) -> ActuationResult:
        """Freeze the workload's own cgroup, or SIGSTOP its process tree."""
        return self._run("pause", workload, self._pause)

    def resume(self, workload: Workload) -> ActuationResult:
        """Thaw the workload's own cgroup if frozen and SIGCONT the tree if stopped."""
        return self._run("resume", workload, self._resume)

    def terminate(self, workload: Workload, grace_s: float | None = None) -> ActuationResult:
        """SIGTERM the tree, wait up to ``grace_s``, SIGKILL the rest and its own cgroup."""
        grace = self.default_grace_s if grace_s is None else grace_s
        if not (math.isfinite(grace) and grace >= 0):
            raise InvalidInput(f"grace period must be a non-negative number, got {grace_s}")
        return self._run("terminate", workload, lambda t: self._terminate(t, grace))

    def throttle_cpu(self, workload: Workload, cores: float) -> ActuationResult:
        """Cap the workload's own cgroup at ``cores`` CPUs with ``cpu.max``, never loosening.

        ``previous`` of the result is the value to hand to :meth:`restore_cpu`. When the
        cap is already as strict, nothing is written and ``previous`` is the current
        value: keep the ``previous`` of the first throttle.
        """
        if not (math.isfinite(cores) and cores > 0):
            raise InvalidInput(f"CPU cap must be a positive number of cores, got {cores}")
        return self._run("throttle", workload, lambda t: self._throttle(t, cores))

    def restore_cpu(self, workload: Workload, previous: str) -> ActuationResult:
        """Write back the ``cpu.max`` value that :meth:`throttle_cpu` returned as previous."""
        try:
            value = CpuMax.parse(previous)
        except ActuationError as exc:
            raise InvalidInput(f"not a cpu.max value: {previous!r}") from exc
        return self._run("restore", workload, lambda t: self._restore(t, value))

    # -- resolution ------------------------------------------------------------------------

    def _run(
        self, action: str, workload: Workload, apply: Callable[[_Target], ActuationResult]
    ) -> ActuationResult:
        reply = Reply(action, workload.workload_id)
        if workload.unattributed:  # its pid is NVML's number, maybe another process's here
            return reply.failed(
                Mechanism.NONE,
                (),
                f"unattributed GPU use, its pid never signalled ({workload.unattributed}); "
                "only its GPU can be capped (throttle)",
            )
        try:
            result = apply(self._resolve(workload, reply))
        except (ProcessGone, PidReused) as exc:
            result = self._gone(workload, reply, exc)
        except NotSupported as exc:
            result = reply.skipped(exc.message)
        except (ActuationError, NotFound) as exc:
            result = reply.failed(Mechanism.NONE, (), exc.message)
        level = logging.WARNING if result.outcome == Outcome.FAILED else logging.INFO
        logger.log(
            level,
            "%s %s via %s: %s",
            action,
            result.outcome,
            result.mechanism,
            result.detail,
            extra={"workload_id": workload.workload_id, "pid": workload.root_pid},
        )
        return result

    def _resolve(self, workload: Workload, reply: Reply) -> _Target:
        self.signals.guard.check(workload.root_pid)  # before enumerating, e.g. all of init
        root = ref_for(workload.root_pid, workload.started_at_s, self.proc_root)
        members = tuple(tree(root, self.proc_root))
        self.signals.guard.check(m.pid for m in members)
        placement, no_placement = self._placement(root, members)
        strays = self._alive(set(workload.pids) - {m.pid for m in members})
        return _Target(reply, root, members, placement, no_placement, strays)

    def _placement(
        self, root: ProcessRef, members: tuple[ProcStat, ...]
    ) -> tuple[Placement | None, str]:
        if self.cgroups is None:
            return None, self._no_cgroups
        try:
            pids = [m.pid for m in members]
            return self.cgroups.placement(root.pid, pids, agent_pid=self.agent_pid), ""
        except NotFound as exc:
            raise ProcessGone(f"process {root.pid} has exited") from exc
        except NotSupported as exc:
            return None, exc.message

    def _alive(self, pids: set[int]) -> tuple[int, ...]:
        return tuple(
            sorted(p for p in pids if (s := read_stat(p, self.proc_root)) is not None and s.alive)
        )

    def _gone(
        self, workload: Workload, reply: Reply, exc: ActuationError | NotFound
    ) -> ActuationResult:
        """The root has exited, or its pid now belongs to someone else."""
        if reply.action != "terminate":
            return reply.skipped(f"workload is gone: {exc.message}")
        alive = self._alive(set(workload.pids) - {workload.root_pid})
        if not alive:
            return reply.applied(Mechanism.NONE, (), f"already exited: {exc.message}")
        detail = (
            f"the root is gone ({exc.message}) but pids {list(alive)} of the last report are "
            "alive; without their root they cannot be told from reused pids, so none was signalled"
        )
        return reply.failed(Mechanism.NONE, alive, detail)

    def _own_cgroups(self) -> CgroupV2:
        if self.cgroups is None:
            raise NotSupported(self._no_cgroups)
        return self.cgroups

    # -- pause and resume ------------------------------------------------------------------

    def _pause(self, t: _Target) -> ActuationResult:
        if t.placement and self._frozen(t.placement):
            return t.reply.applied(
                Mechanism.CGROUP_FREEZE,
                t.pids,
                t.note(f"already paused: cgroup {t.placement.cgroup} is frozen"),
                leaves_behind=f"frozen in cgroup {t.placement.cgroup}; {PAUSED_KEEPS}",
            )
        if placement := t.dedicated:
            return self._freeze(t, placement)
        stopped_keeps = f"stopped with SIGSTOP; {PAUSED_KEEPS}"
        if all(m.stopped for m in t.members):
            detail = t.note(f"already paused: all {len(t.members)} processes are stopped")
            return t.reply.applied(Mechanism.SIGSTOP, t.pids, detail, leaves_behind=stopped_keeps)
        stop = self.signals.stop_tree(t.root)
        if stop.complete:
            detail = t.note(
                f"stopped {len(stop.stopped)} processes with SIGSTOP "
                f"(no cgroup freeze: {t.why_shared()})"
            )
            return t.reply.applied(
                Mechanism.SIGSTOP, stop.stopped, detail, leaves_behind=stopped_keeps
            )
        detail = f"pids {list(stop.not_stopped)} did not reach state T" + (
            "" if stop.stable else " and the tree kept forking"
        )
        return t.reply.failed(
            Mechanism.SIGSTOP,
            tuple(sorted({*stop.stopped, *stop.not_stopped})),
            f"{detail}; {len(stop.stopped)} stopped",
            leaves_behind="SIGSTOP stays pending for the others; resume undoes it",
        )

    def _frozen(self, placement: Placement) -> bool:
        cgroups = self._own_cgroups()
        if cgroups.is_root(placement.directory):
            return False
        try:
            return cgroups.frozen(placement.directory)
        except NotSupported:
            return False

    def _freeze(self, t: _Target, placement: Placement) -> ActuationResult:
        cg = placement.cgroup
        if self._own_cgroups().freeze(placement.directory, timeout_s=self.freeze_timeout_s):
            return t.reply.applied(
                Mechanism.CGROUP_FREEZE,
                t.pids,
                t.note(f"froze cgroup {cg} ({len(t.members)} processes)"),
                leaves_behind=f"frozen in cgroup {cg}; {PAUSED_KEEPS}",
            )
        return t.reply.failed(
            Mechanism.CGROUP_FREEZE,
            t.pids,
            f"cgroup {cg} did not report frozen within {self.freeze_timeout_s:g} s "
            "(a process may be in an uninterruptible call)",
            leaves_behind=f"cgroup.freeze of {cg} stays 1 and completes later; resume undoes it",
        )

    def _resume(self, t: _Target) -> ActuationResult:
        done: list[str] = []
        problems: list[str] = []
        if (placement := t.placement) and self._freeze_requested(placement):
            if not placement.dedicated:
                problems.append(
                    f"cgroup {placement.cgroup} is frozen but is not the workload's own "
                    f"({placement.reason}); not thawed"
                )
            elif self._own_cgroups().thaw(placement.directory, timeout_s=self.freeze_timeout_s):
                done.append(f"thawed cgroup {placement.cgroup}")
            else:
                problems.append(f"cgroup {placement.cgroup} did not report thawed")
        mechanisms = [Mechanism.CGROUP_FREEZE] if done else []
        stopped = [m for m in t.members if (s := read_stat(m.pid, self.proc_root)) and s.stopped]
        if stopped:
            mechanisms.append(Mechanism.SIGCONT)
            cont = self.signals.continue_tree(t.root)
            done.append(f"continued {len(stopped)} stopped processes")
            if cont.still_stopped:
                problems.append(f"pids {list(cont.still_stopped)} are still stopped")
        mechanism = "+".join(mechanisms) or Mechanism.NONE
        if problems:
            return t.reply.failed(mechanism, t.pids, "; ".join(problems))
        detail = " and ".join(done) or "already running: nothing frozen or stopped"
        return t.reply.applied(mechanism, t.pids, t.note(detail))

    def _freeze_requested(self, placement: Placement) -> bool:
        cgroups = self._own_cgroups()
        return not cgroups.is_root(placement.directory) and cgroups.freeze_requested(
            placement.directory
        )

    # -- terminate -------------------------------------------------------------------------

    def _terminate(self, t: _Target, grace_s: float) -> ActuationResult:
        placement = t.dedicated
        release: Callable[[], None] | None = None
        if placement and self._freeze_requested(placement):
            directory = placement.directory

            def release() -> None:  # let the frozen tree run to handle its SIGTERM
                self._own_cgroups().thaw(directory, timeout_s=self.freeze_timeout_s)

        result = self.signals.terminate_tree(t.root, grace_s, release=release)
        swept, left = self._sweep(placement) if placement else (frozenset(), frozenset())
        mechanism = Mechanism.SIGTERM_SIGKILL + (f"+{Mechanism.CGROUP_KILL}" if swept else "")
        pids = tuple(sorted({*result.pids, *swept}))
        detail = t.note(_terminate_detail(t.root, result, grace_s, swept))
        if result.complete and not left:
            return t.reply.applied(mechanism, pids, detail, leaves_behind=TERMINATED_LEAVES)
        stuck = sorted({*result.survivors, *left})
        return t.reply.failed(
            mechanism, pids, f"{detail}; pids {stuck} survived SIGKILL (stuck in the kernel?)"
        )

    def _sweep(self, placement: Placement) -> tuple[frozenset[int], frozenset[int]]:
        """cgroup.kill what is still in the workload's own cgroup (e.g. escaped daemons).

        Returns the pids found and those left after the kill timeout.
        """
        cgroups = self._own_cgroups()
        try:
            found = cgroups.procs(placement.directory)
            if not found or not cgroups.can_kill(placement.directory):
                return frozenset(), found
            cgroups.kill(placement.directory)
            return found, cgroups.await_empty(placement.directory, timeout_s=self.kill_timeout_s)
        except NotFound:
            return frozenset(), frozenset()  # the cgroup went away with its last process

    # -- cpu.max ---------------------------------------------------------------------------

    def _own_cgroup(self, t: _Target) -> Placement:
        if placement := t.dedicated:
            return placement
        raise NotSupported(f"no cgroup of its own, cpu.max would cap others: {t.why_shared()}")

    def _throttle(self, t: _Target, cores: float) -> ActuationResult:
        placement = self._own_cgroup(t)
        cgroups, cg = self._own_cgroups(), placement.cgroup
        current = cgroups.read_cpu_max(placement.directory)
        wanted = CpuMax.for_cores(cores, current.period_us)
        if current.quota_us is not None and current.quota_us <= (wanted.quota_us or 0):
            previous = current
            detail = (
                f"already throttled: cpu.max of {cg} is {current.render()!r} (<= {cores:g} cores)"
            )
            left = f"cpu.max {current.render()!r} on {cg}"
        else:
            previous = cgroups.write_cpu_max(placement.directory, wanted)
            detail = f"cpu.max of {cg} set to {wanted.render()!r} ({cores:g} cores)"
            left = f"cpu.max {wanted.render()!r} on {cg} until restored"
        return t.reply.applied(
            Mechanism.CPU_MAX, t.pids, detail, leaves_behind=left, previous=previous.render()
        )

    def _restore(self, t: _Target, value: CpuMax) -> ActuationResult:
        placement = self._own_cgroup(t)
        cgroups, cg = self._own_cgroups(), placement.cgroup
        current = cgroups.read_cpu_max(placement.directory)
        if current == value:
            detail = f"already restored: cpu.max of {cg} is {value.render()!r}"
        else:
            cgroups.write_cpu_max(placement.directory, value)
            detail = f"cpu.max of {cg} restored to {value.render()!r} from {current.render()!r}"
        return t.reply.applied(Mechanism.CPU_MAX, t.pids, detail)


def _terminate_detail(
    root: ProcessRef, result: TerminateResult, grace_s: float, swept: frozenset[int]
) -> str:
    detail = (
        f"{len(result.exited)} exited after SIGTERM, {len(result.killed)} killed with SIGKILL "
        f"after a {grace_s:g} s grace"
    )
    if swept:
        detail += f", {len(swept)} more killed through cgroup.kill"
    if (code := result.exit_codes.get(root.pid)) is not None:
        detail += f"; root exit status {code}"
    return detail
