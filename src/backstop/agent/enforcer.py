"""Applies commands to this node's workloads, one at a time, through a single queue.

Every enforcement on a node (commands from the controller and the re-application of corrections
still in force) goes through :meth:`Enforcer.run`'s queue, so two requests never race on the
same process tree. Each command is checked (duplicate, expiry), its intent journaled, applied
to the workloads in scope (found by a fresh sample, not a stale one), journaled with its
outcome, and acknowledged. A correction delivered again under the sequence it was handled
with gets its stored acknowledgement back; under any other sequence it is a replay, refused.

Every effect is a hold keyed by its correction (``agent.holds``): a resume releases only the
hold of the correction it reverts. Corrections in force stick: a workload that appears later
and falls into the scope of an active pause or shutdown is paused or terminated on the next
sample, until resume or expiry. A correction whose workload criteria (selector, model hashes,
workload ids) match nothing here is acknowledged and not kept in force.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from backstop.agent import holds, metrics, policy_authority
from backstop.agent.actuators.workload_actuator import ProcessActuator
from backstop.agent.collectors.nvml import NvmlBackend
from backstop.agent.records import outcomes_record, stored_ack
from backstop.agent.state import AgentState, AppliedCorrection, AppliedWorkload
from backstop.agent.throttle import Throttler
from backstop.agent.verifier import CommandVerifier
from backstop.agent.workload_actions import Effect, WorkloadActions, workload_outcome
from backstop.core.models import (
    Action,
    ActionParams,
    AuditHead,
    Command,
    CommandAck,
    CorrectionSpec,
    Scope,
    TargetState,
    Workload,
    WorkloadOutcome,
)
from backstop.core.scope import parse_selector, workload_in_scope
from backstop.core.specs import new_spec
from backstop.security.audit_file import FileAuditLog
from backstop.telemetry.logs import correction_fields
from backstop.wire import correction_convert

log = logging.getLogger(__name__)

STICKY_ACTIONS = (Action.PAUSE, Action.SHUTDOWN)
LEASE_HOLD_S = 365 * 24 * 3600.0
"""A lease pause holds until the controller is heard again (it is lifted then, not expired)."""
NOTHING_MATCHED = "no workload in scope on this node"
LOCAL_PREFIXES = ("lease-", "node-")
"""Ids of corrections the agent makes itself (its lease, its node policies): the controller
knows none of them, so their acks are never sent."""


@dataclass(frozen=True, slots=True)
class ObserveOverride:
    interval_s: float
    until_s: float


class Enforcer:
    def __init__(
        self,
        node_id: str,
        state: AgentState,
        refresh: Callable[[], Sequence[Workload]],
        actuator: ProcessActuator,
        gpu: NvmlBackend | None,
        *,
        verifier: CommandVerifier | None = None,
        journal: FileAuditLog | None = None,
        default_grace_s: float = ActionParams.DEFAULT_GRACE_S,
        node_labels: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._node_id = node_id
        self._labels = dict(node_labels or {})
        """The node's labels, as policies match them (under each workload's own)."""
        self._state = state
        self._refresh = refresh
        self._clock = clock
        self._verifier = verifier if verifier is not None else CommandVerifier(None, clock)
        self._actions = WorkloadActions(
            Throttler(node_id, state, actuator, gpu, clock), default_grace_s=default_grace_s
        )
        self._journal_log = journal
        self._queue: asyncio.Queue[tuple[Callable[[], Awaitable[Any]], asyncio.Future[Any]]] = (
            asyncio.Queue()
        )
        self.observe: ObserveOverride | None = None

    # --- the queue -----------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            job, future = await self._queue.get()
            if future.cancelled():
                continue
            try:
                future.set_result(await job())
            except Exception as exc:
                log.exception("enforcement job failed")
                future.set_exception(exc)

    async def _enqueue(self, job: Callable[[], Awaitable[Any]]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._queue.put((job, future))
        return await future

    async def submit(self, command: Command) -> CommandAck:
        """Apply a command (in queue order) and return its acknowledgement."""
        started = time.perf_counter()
        try:
            ack: CommandAck = await self._enqueue(lambda: self._apply(command))
        except Exception as exc:  # noqa: BLE001 - reported to the controller as a failure
            ack = CommandAck(
                command.spec.correction_id,
                command.sequence,
                TargetState.FAILED,
                f"agent error: {type(exc).__name__}: {exc}",
            )
        metrics.COMMANDS.labels(action=command.spec.action.value, state=ack.state.value).inc()
        metrics.ACTION_SECONDS.labels(action=command.spec.action.value).observe(
            time.perf_counter() - started
        )
        return ack

    async def reconcile(self, workloads: Sequence[Workload]) -> None:
        """Apply corrections still in force to workloads that newly fall into their scope."""
        if any(c.action in STICKY_ACTIONS for c in self._state.active(self._clock())):
            await self._enqueue(lambda: self._reconcile(workloads))

    def annotate(self, workloads: Sequence[Workload]) -> list[Workload]:
        """Each workload with the holds in force on it, and the state they make."""
        return holds.annotate(workloads, self._state, self._clock())

    def journal_head(self) -> AuditHead:
        """The head of this agent's own journal (reported with every Hello and Report)."""
        last = self._journal_log.last if self._journal_log is not None else None
        return AuditHead(last.seq, last.hash) if last is not None else AuditHead()

    def witnessed_head(self) -> AuditHead:
        """The newest controller audit head this agent received with a command."""
        seq, head_hash = self._state.newest_witnessed()
        return AuditHead(seq, head_hash)

    # --- commands ------------------------------------------------------------------------

    async def _apply(self, command: Command) -> CommandAck:
        spec = command.spec
        head = command.audit_head
        self._audit(
            "command.received",
            spec,
            sequence=command.sequence,
            issuer=spec.issuer,
            signers=[f"{s.signer}:{s.role}:{s.key_id}" for s in command.signatures],
            **({"audit_head": {"seq": head.seq, "hash": head.hash}} if not head.empty else {}),
        )
        if not head.empty:
            self._witness(head, spec)
        prior = self._state.corrections.get(spec.correction_id)
        if (
            prior is not None
            and prior.ack_state != "applying"
            and prior.sequence == command.sequence
            and prior.spec == command.spec_bytes.hex()
        ):
            self._audit("command.redelivered", spec, sequence=command.sequence)
            return stored_ack(prior, command.sequence)
        problem = self._verifier.problem(command, self._state)
        if problem:
            log.warning("refused command", extra=correction_fields(spec, "refused", detail=problem))
            self._audit("command.refused", spec, sequence=command.sequence, reason=problem)
            return CommandAck(spec.correction_id, command.sequence, TargetState.REFUSED, problem)
        self._journal(
            command, CommandAck(spec.correction_id, command.sequence, TargetState.PENDING), []
        )
        return await self._execute(command)

    def _witness(self, head: AuditHead, spec: CorrectionSpec) -> None:
        """Keep the controller's audit head; a second hash for one index is a conflict."""
        known = self._state.witness(head.seq, head.hash)
        if known:
            log.error(
                "the controller's audit log changed under a head already witnessed",
                extra={"seq": head.seq, "witnessed": known, "received": head.hash},
            )
            self._audit(
                "audit.head_conflict",
                spec,
                seq=head.seq,
                witnessed_hash=known,
                received_hash=head.hash,
            )

    async def _execute(self, command: Command) -> CommandAck:
        """Act on a verified, journaled command; journal and audit the result."""
        spec = command.spec
        log.info(
            "applying correction",
            extra={"correction_id": spec.correction_id, "action": spec.action.value},
        )
        in_force = True
        if spec.action is Action.RESUME:
            self._audit("action.apply", spec, reverts=spec.reverts)
            outcomes, message = await self._resume(spec)
            applied: list[AppliedWorkload] = []
            previous_power: dict[str, int] = {}
        else:
            workloads = await asyncio.to_thread(self._refresh)
            in_scope, skipped = policy_authority.matching(
                command, [w for w in workloads if workload_in_scope(spec.scope, w)], self._labels
            )
            self._audit(
                "action.apply",
                spec,
                workloads={w.workload_id: list(w.pids) for w in in_scope},
            )
            if not in_scope and spec.scope.names_workloads:
                # nothing here for it, now or later: acknowledged, not kept in force
                outcomes, applied, previous_power, message = [], [], {}, NOTHING_MATCHED
                in_force = False
            else:
                outcomes, applied, previous_power, message = await self._act(spec, in_scope)
            outcomes = [*outcomes, *skipped]
        failed = [o for o in outcomes if o.outcome == "failed"]
        ack = CommandAck(
            spec.correction_id,
            command.sequence,
            TargetState.FAILED if failed else TargetState.APPLIED,
            message,
            tuple(outcomes),
        )
        self._audit("action.result", spec, state=ack.state.value, message=message)
        fields = correction_fields(spec, ack.state.value, detail=message, workloads=len(outcomes))
        log.log(logging.WARNING if failed else logging.INFO, "correction applied", extra=fields)
        self._journal(command, ack, applied, previous_power, in_force=in_force)
        return ack

    async def recover(self) -> list[CommandAck]:
        """Finish commands a crash interrupted (journaled as applying); their acks to send."""
        acks = []
        for applied in sorted(self._state.corrections.values(), key=lambda c: c.sequence):
            if applied.ack_state != "applying":
                continue
            data = bytes.fromhex(applied.spec)
            command = Command(applied.sequence, correction_convert.spec_from_bytes(data), data)
            self._audit("command.recovered", command.spec, sequence=applied.sequence)
            acks.append(await self._enqueue(functools.partial(self._execute, command)))
        return acks

    async def engage_lease(self, selector: str, silent_s: float) -> None:
        """Fail closed: pause workloads in scope after the controller went silent too long."""
        await self._enqueue(lambda: self._engage_lease(selector, silent_s))

    async def _engage_lease(self, selector: str, silent_s: float) -> None:
        now = self._clock()
        scope = Scope(selector=parse_selector(selector)) if selector else Scope(all=True)
        spec = new_spec(
            Action.PAUSE,
            scope,
            f"lease expired: no word from the controller for {silent_s:.0f} s",
            self._node_id,
            now_s=now,
            ttl_s=LEASE_HOLD_S,
            correction_id=f"lease-{int(now * 1000):x}",
        )
        command = Command(0, spec, correction_convert.spec_bytes(spec))
        ack = await self._run_local(command, "lease.engage", silent_s=round(silent_s, 1))
        log.warning(
            "lease expired: workloads paused (fail-closed)",
            extra={"correction_id": spec.correction_id, "detail": ack.message},
        )

    async def _run_local(self, command: Command, event: str, **details: object) -> CommandAck:
        """Apply a correction of the agent's own making (sequence 0): audited, journaled."""
        spec = command.spec
        self._audit(event, spec, **details)
        self._journal(command, CommandAck(spec.correction_id, 0, TargetState.PENDING), [])
        return await self._execute(command)

    async def run_local(self, command: Command, event: str, **details: object) -> CommandAck:
        """Verify, then apply (in queue order) a correction the agent made itself from what
        it was given (a node policy): refused when its authority does not hold here."""

        async def job() -> CommandAck:
            problem = self._verifier.problem(command, self._state)
            spec = command.spec
            if problem:
                self._audit("command.refused", spec, reason=problem)
                return CommandAck(spec.correction_id, 0, TargetState.REFUSED, problem)
            return await self._run_local(command, event, **details)

        result: CommandAck = await self._enqueue(job)
        return result

    async def lift_local(self, correction_id: str, reason: str, event: str) -> None:
        """Undo a correction the agent applied of its own accord (in queue order)."""
        await self._enqueue(lambda: self._lift(correction_id, reason, event))

    async def _lift(self, correction_id: str, reason: str, event: str) -> str:
        now = self._clock()
        spec = new_spec(
            Action.RESUME,
            Scope(all=True),
            reason,
            self._node_id,
            now_s=now,
            ttl_s=60,
            reverts=correction_id,
            correction_id=f"lift-{correction_id}-{int(now * 1000):x}",
        )
        self._audit(event, spec, reverts=correction_id)
        _, message = await self._resume(spec)
        return message

    def lease_engaged(self) -> bool:
        return any(c.correction_id.startswith("lease-") for c in self._state.active(self._clock()))

    async def lift_lease(self) -> None:
        """The controller is heard again: undo every lease pause."""
        await self._enqueue(self._lift_lease)

    async def _lift_lease(self) -> None:
        for lease in self._state.active(self._clock()):
            if lease.correction_id.startswith("lease-"):
                message = await self._lift(
                    lease.correction_id, "controller heard again", "lease.lift"
                )
                log.warning(
                    "lease lifted", extra={"correction_id": lease.correction_id, "detail": message}
                )

    def recent_acks(self, limit: int = 20) -> list[CommandAck]:
        """The stored acks of the latest handled commands, re-sent after each reconnect."""
        done = [
            c
            for c in self._state.corrections.values()
            if c.ack_state != "applying" and not c.correction_id.startswith(LOCAL_PREFIXES)
        ]
        done.sort(key=lambda c: (c.handled_at_s, c.sequence))
        return [stored_ack(c, c.sequence) for c in done[-limit:]]

    def _audit(self, event: str, spec: CorrectionSpec, **details: object) -> None:
        """Append to the agent's journal (fsynced) before the step takes effect."""
        if self._journal_log is not None:
            self._journal_log.append(
                actor=self._node_id,
                action=event,
                subject=spec.correction_id,
                details={"action": spec.action.value, **details},
            )

    async def _act(self, spec: CorrectionSpec, workloads: list[Workload]) -> Effect:
        action = spec.action
        if action is Action.OBSERVE:
            interval = spec.params.sample_interval_s or ActionParams.DEFAULT_OBSERVE_INTERVAL_S
            self.observe = ObserveOverride(interval, spec.expires_at_s)
            outcomes = [
                workload_outcome(w, "applied", f"sampling every {interval:g} s") for w in workloads
            ]
            return outcomes, [], {}, f"sampling every {interval:g} s until expiry"
        return await self._actions.act(spec, workloads)

    async def _resume(self, spec: CorrectionSpec) -> tuple[list[WorkloadOutcome], str]:
        target = self._state.corrections.get(spec.reverts)
        if target is not None and target.reverted:
            return [], f"{spec.reverts} was already undone here"
        now = self._clock()
        if target is None or target not in self._state.holding(now):
            return [], f"nothing of {spec.reverts} to undo on this node"
        outcomes: list[WorkloadOutcome] = []
        if target.action == Action.OBSERVE.value:
            self.observe = None
        if target.action == Action.PAUSE.value:
            outcomes = await asyncio.to_thread(self._actions.unpause, target, now)
        if target.action == Action.THROTTLE.value:
            outcomes = await asyncio.to_thread(self._actions.unthrottle, target)
        self._state.mark_reverted(spec.reverts)
        if target.action == Action.SHUTDOWN.value:
            return [], f"fence of {spec.reverts} lifted; terminated workloads are not restarted"
        done = sum(1 for o in outcomes if o.outcome == "applied")
        return outcomes, f"undid {target.action} of {spec.reverts}: {done} workload(s)"

    async def _reconcile(self, workloads: Sequence[Workload]) -> None:
        for correction in self._state.active(self._clock()):
            if correction.action not in (a.value for a in STICKY_ACTIONS):
                continue
            spec = correction_convert.spec_from_bytes(bytes.fromhex(correction.spec))
            handled = {w.workload_id for w in correction.workloads}
            new = [
                w
                for w in workloads
                if w.workload_id not in handled and workload_in_scope(spec.scope, w)
            ]
            if not new:
                continue
            self._audit(
                "enforcement.reapply", spec, workloads={w.workload_id: list(w.pids) for w in new}
            )
            _, applied, _, message = await self._act(spec, new)
            log.warning(
                "re-applied correction in force to new workloads",
                extra={
                    "correction_id": correction.correction_id,
                    "count": len(new),
                    "detail": message,
                },
            )
            correction.workloads.extend(applied)
            self._state.record(correction)

    def _journal(
        self,
        command: Command,
        ack: CommandAck,
        applied: list[AppliedWorkload],
        previous_power: dict[str, int] | None = None,
        *,
        in_force: bool = True,
    ) -> None:
        state = "applying" if ack.state is TargetState.PENDING else ack.state.value
        self._state.record(
            AppliedCorrection(
                correction_id=command.spec.correction_id,
                action=command.spec.action.value,
                sequence=command.sequence,
                spec=command.spec_bytes.hex(),
                expires_at_s=command.spec.expires_at_s,
                ack_state=state,
                ack_message=ack.message,
                ack_outcomes=outcomes_record(ack.outcomes),
                workloads=applied,
                previous_power_mw=previous_power or {},
                in_force=in_force,
            )
        )
