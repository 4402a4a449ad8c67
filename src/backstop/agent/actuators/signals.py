"""Signals to whole process trees: stop, continue and terminate, each bounded and verified.

Every signal goes to a :class:`~backstop.agent.actuators.proctree.ProcessRef` through a
pidfd opened before the identity check, so a pid reused in between is never signalled;
every pid passes the :class:`~backstop.agent.actuators.proctree.SignalGuard` first.
A process that exits while being handled is a success for terminate and is reported
as vanished elsewhere; all loops are bounded by a round count and a deadline.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from backstop.agent.actuators.proctree import (
    PidReused,
    ProcessGone,
    ProcessRef,
    ProcStat,
    SignalGuard,
    current,
    descendants,
    read_stat,
    snapshot,
    tree,
)
from backstop.core.errors import ActuationError

if TYPE_CHECKING:
    import psutil

logger = logging.getLogger(__name__)

_NO_CODES: Mapping[int, int] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class StopResult:
    """What :meth:`TreeSignaller.stop_tree` left: who is stopped, who vanished, who is not."""

    stopped: tuple[int, ...]
    """Pids verified in state T."""
    vanished: tuple[int, ...] = ()
    """Pids that exited while the tree was being stopped."""
    not_stopped: tuple[int, ...] = ()
    """Pids still alive and not in state T at the deadline (e.g. in an uninterruptible call)."""
    stable: bool = True
    """Whether a final enumeration found no new child."""

    @property
    def complete(self) -> bool:
        """Every living process of the tree is stopped and no new one appeared."""
        return self.stable and not self.not_stopped


@dataclass(frozen=True, slots=True)
class ContinueResult:
    """What :meth:`TreeSignaller.continue_tree` left."""

    continued: tuple[int, ...]
    vanished: tuple[int, ...] = ()
    still_stopped: tuple[int, ...] = ()
    """Pids still in state T at the deadline (stopped again by someone else, or traced)."""

    @property
    def complete(self) -> bool:
        """No process of the tree is left stopped."""
        return not self.still_stopped


@dataclass(frozen=True, slots=True)
class TerminateResult:
    """What :meth:`TreeSignaller.terminate_tree` left."""

    exited: tuple[int, ...]
    """Pids gone before SIGKILL was needed (SIGTERM, or they had already exited)."""
    killed: tuple[int, ...] = ()
    """Pids that outlived the grace period and were killed with SIGKILL."""
    survivors: tuple[int, ...] = ()
    """Pids still alive after SIGKILL and the kill timeout (stuck in the kernel)."""
    exit_codes: Mapping[int, int] = field(default_factory=lambda: _NO_CODES)
    """Exit status of processes this process reaped (its own children); ``-N`` is signal N."""

    @property
    def complete(self) -> bool:
        """Every process of the tree is gone."""
        return not self.survivors

    @property
    def pids(self) -> tuple[int, ...]:
        """Every pid the call handled."""
        return tuple(sorted({*self.exited, *self.killed, *self.survivors}))


class TreeSignaller:
    """Stops, continues and terminates process trees on this host."""

    def __init__(
        self,
        *,
        proc_root: Path = Path("/proc"),
        guard: SignalGuard | None = None,
        settle_timeout_s: float = 2.0,
        kill_timeout_s: float = 5.0,
        max_rounds: int = 64,
        poll_interval_s: float = 0.005,
    ) -> None:
        self.proc_root = proc_root
        self.guard = guard or SignalGuard(proc_root=proc_root)
        self.settle_timeout_s = settle_timeout_s
        self.kill_timeout_s = kill_timeout_s
        self.max_rounds = max_rounds
        self.poll_interval_s = poll_interval_s

    # -- one signal ------------------------------------------------------------------------

    def send(self, ref: ProcessRef, signum: int) -> bool:
        """Send ``signum`` to the process ``ref`` names; False when it has already exited.

        Raises ProtectedProcess for a guarded pid and PidReused when the pid now belongs
        to another process.
        """
        self.guard.check(ref.pid)
        try:
            pidfd = os.pidfd_open(ref.pid)
        except ProcessLookupError:
            return False
        except OSError:
            pidfd = -1  # no pidfd support: fall back to kill(2) right after the check
        try:
            current(ref, self.proc_root)
            if pidfd >= 0:
                signal.pidfd_send_signal(pidfd, signum)
            else:
                os.kill(ref.pid, signum)
        except (ProcessGone, ProcessLookupError):
            return False
        except PermissionError as exc:
            raise ActuationError(f"not permitted to signal pid {ref.pid}") from exc
        finally:
            if pidfd >= 0:
                os.close(pidfd)
        logger.debug("sent %s", signal.Signals(signum).name, extra={"pid": ref.pid})
        return True

    def _send_member(self, ref: ProcessRef, signum: int) -> bool:
        """Like :meth:`send` for a non-root member: a reused pid means ours is gone."""
        try:
            return self.send(ref, signum)
        except PidReused:
            return False

    # -- stop ------------------------------------------------------------------------------

    def stop_tree(self, root: ProcessRef) -> StopResult:
        """SIGSTOP the root (so it cannot fork), then its descendants until the set is stable.

        Each round waits until every known process is in state T before enumerating
        again, so no process that could still fork is left out of the last enumeration.
        """
        self.guard.check(stat.pid for stat in tree(root, self.proc_root))
        if not self.send(root, signal.SIGSTOP):
            raise ProcessGone(f"process {root.pid} has exited")
        known = {root.pid: root}
        vanished: set[int] = set()
        stable = self._stop_until_stable(known, vanished)
        stopped, not_stopped = self._partition(known, vanished, want_stopped=True)
        result = StopResult(
            stopped=tuple(sorted(stopped)),
            vanished=tuple(sorted(vanished)),
            not_stopped=tuple(sorted(not_stopped)),
            stable=stable,
        )
        logger.info(
            "stopped tree: %d stopped, %d vanished, %d not stopped, stable=%s",
            len(result.stopped),
            len(result.vanished),
            len(result.not_stopped),
            result.stable,
            extra={"pid": root.pid},
        )
        return result

    def _stop_until_stable(self, known: dict[int, ProcessRef], vanished: set[int]) -> bool:
        """SIGSTOP newly found descendants of ``known`` until none appears; False if bounded out."""
        deadline = time.monotonic() + self.settle_timeout_s
        for _ in range(self.max_rounds):
            self._await(known, vanished, deadline, want_stopped=True)
            living = [pid for pid in known if pid not in vanished]
            new = [s for s in descendants(snapshot(self.proc_root), living) if s.pid not in known]
            if not new:
                return True
            self.guard.check(stat.pid for stat in new)
            for stat in new:
                known[stat.pid] = stat.ref
                if not self._send_member(stat.ref, signal.SIGSTOP):
                    vanished.add(stat.pid)
        return False

    # -- continue --------------------------------------------------------------------------

    def continue_tree(
        self, root: ProcessRef | None = None, refs: Iterable[ProcessRef] = ()
    ) -> ContinueResult:
        """SIGCONT the tree of ``root`` (children first) and each of ``refs``.

        Raises ProcessGone or PidReused when ``root`` is given and no longer exists.
        """
        members = [s.ref for s in reversed(tree(root, self.proc_root))] if root else []
        targets = {ref.pid: ref for ref in [*members, *refs]}
        self.guard.check(targets)
        vanished = {
            pid for pid, ref in targets.items() if not self._send_member(ref, signal.SIGCONT)
        }
        deadline = time.monotonic() + self.settle_timeout_s
        self._await(targets, vanished, deadline, want_stopped=False)
        running, still_stopped = self._partition(targets, vanished, want_stopped=False)
        logger.info(
            "continued %d processes, %d still stopped",
            len(running),
            len(still_stopped),
            extra={"pid": root.pid if root else 0},
        )
        return ContinueResult(
            continued=tuple(sorted(running)),
            vanished=tuple(sorted(vanished)),
            still_stopped=tuple(sorted(still_stopped)),
        )

    # -- terminate -------------------------------------------------------------------------

    def terminate_tree(
        self,
        root: ProcessRef,
        grace_s: float,
        *,
        release: Callable[[], None] | None = None,
    ) -> TerminateResult:
        """SIGTERM the tree, let it run, wait up to ``grace_s``, SIGKILL what is left.

        Stopped processes get SIGCONT so they can handle SIGTERM; ``release`` runs after
        SIGTERM is queued to everyone, to let a frozen tree run (e.g. thaw its cgroup).
        Children forked during the grace period get SIGTERM too. Before SIGKILL the
        survivors are stopped until stable, so no late child escapes the kill.
        Raises ProcessGone or PidReused when the root no longer exists.
        """
        members = tree(root, self.proc_root)
        self.guard.check(stat.pid for stat in members)
        run = _Termination(self)
        run.add_and_term(members)
        if release is not None:
            release()
        run.wait_grace(grace_s)
        run.kill_rest()
        result = run.result()
        logger.info(
            "terminated tree: %d exited, %d killed, %d survivors",
            len(result.exited),
            len(result.killed),
            len(result.survivors),
            extra={"pid": root.pid},
        )
        return result

    # -- shared ----------------------------------------------------------------------------

    def _await(
        self,
        refs: Mapping[int, ProcessRef],
        vanished: set[int],
        deadline: float,
        *,
        want_stopped: bool,
    ) -> None:
        """Poll until every living process of ``refs`` is (or is not) in state T."""
        while True:
            _, waiting = self._partition(refs, vanished, want_stopped=want_stopped)
            if not waiting or time.monotonic() >= deadline:
                return
            time.sleep(self.poll_interval_s)

    def _partition(
        self, refs: Mapping[int, ProcessRef], vanished: set[int], *, want_stopped: bool
    ) -> tuple[list[int], list[int]]:
        """Split living ``refs`` into (in the wanted state, not yet); record the vanished."""
        done: list[int] = []
        waiting: list[int] = []
        for pid, ref in refs.items():
            if pid in vanished:
                continue
            stat = self._living(ref)
            if stat is None:
                vanished.add(pid)
            elif stat.stopped == want_stopped:
                done.append(pid)
            else:
                waiting.append(pid)
        return done, waiting

    def _living(self, ref: ProcessRef) -> ProcStat | None:
        stat = read_stat(ref.pid, self.proc_root)
        if stat is None or not stat.alive or stat.start_ticks != ref.start_ticks:
            return None
        return stat


class _Termination:
    """The bookkeeping of one terminate_tree call: who was signalled, who is gone, how.

    psutil (about 1.3 MiB) is imported here, by the first termination, not with the agent."""

    def __init__(self, signaller: TreeSignaller) -> None:
        import psutil  # only where a termination waits for exits

        self.psutil = psutil
        self.s = signaller
        self.refs: dict[int, ProcessRef] = {}
        self.handles: dict[int, psutil.Process] = {}
        self.gone: set[int] = set()
        self.killed: set[int] = set()
        self.codes: dict[int, int] = {}

    def alive(self) -> list[psutil.Process]:
        return [h for pid, h in self.handles.items() if pid not in self.gone]

    def _track(self, ref: ProcessRef) -> bool:
        """Remember a member and open a psutil handle; False when it has already gone."""
        self.refs[ref.pid] = ref
        try:
            handle = self.psutil.Process(ref.pid)
        except self.psutil.NoSuchProcess:
            handle = None
        except self.psutil.Error as exc:
            raise ActuationError(f"cannot watch pid {ref.pid}: {exc}") from exc
        if handle is None or self.s._living(ref) is None:
            self.gone.add(ref.pid)
            return False
        self.handles[ref.pid] = handle
        return True

    def add_and_term(self, members: Iterable[ProcStat]) -> None:
        """Track ``members``, SIGTERM them, then SIGCONT those stopped so they can handle it."""
        fresh = [stat for stat in members if stat.pid not in self.refs and self._track(stat.ref)]
        for stat in fresh:
            if not self.s._send_member(stat.ref, signal.SIGTERM):
                self.gone.add(stat.pid)
        for stat in fresh:
            living = self.s._living(stat.ref)
            if living is not None and living.stopped:
                self.s._send_member(stat.ref, signal.SIGCONT)

    def _newcomers(self) -> list[ProcStat]:
        living = [pid for pid in self.refs if pid not in self.gone]
        found = descendants(snapshot(self.s.proc_root), living)
        new = [stat for stat in found if stat.pid not in self.refs]
        self.s.guard.check(stat.pid for stat in new)
        return new

    def _reap(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for exits; a zombie that is not ours counts as gone."""
        gone, alive = self.psutil.wait_procs(self.alive(), timeout=timeout_s)
        for handle in gone:
            self.gone.add(handle.pid)
            code = getattr(handle, "returncode", None)
            if isinstance(code, int):
                self.codes[handle.pid] = code
        for handle in alive:
            if self.s._living(self.refs[handle.pid]) is None:
                self.gone.add(handle.pid)

    def wait_grace(self, grace_s: float) -> None:
        """Wait for the tree to exit, sending SIGTERM to children forked meanwhile."""
        deadline = time.monotonic() + grace_s
        while self.alive():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._reap(min(0.05, remaining))
            self.add_and_term(self._newcomers())

    def kill_rest(self) -> None:
        """Stop the survivors until stable, SIGKILL them all, then wait for their exit."""
        if not self.alive():
            return
        known = {pid: self.refs[pid] for pid in self.handles if pid not in self.gone}
        for ref in known.values():
            self.s._send_member(ref, signal.SIGSTOP)
        vanished: set[int] = set()
        self.s._stop_until_stable(known, vanished)
        for pid, ref in known.items():
            if pid not in self.refs:
                self._track(ref)
        self.gone |= vanished
        for handle in self.alive():
            if self.s._send_member(self.refs[handle.pid], signal.SIGKILL):
                self.killed.add(handle.pid)
            else:
                self.gone.add(handle.pid)
        deadline = time.monotonic() + self.s.kill_timeout_s
        while self.alive() and time.monotonic() < deadline:
            self._reap(min(0.05, max(0.0, deadline - time.monotonic())))

    def result(self) -> TerminateResult:
        survivors = {h.pid for h in self.alive()}
        return TerminateResult(
            exited=tuple(sorted(self.gone - self.killed)),
            killed=tuple(sorted(self.killed - survivors)),
            survivors=tuple(sorted(survivors)),
            exit_codes=MappingProxyType(dict(self.codes)),
        )
