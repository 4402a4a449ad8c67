"""The corrections engine: turns a request into commands and drives it to completion.

Lifecycle (design brief §3): ``approved → dispatched → (per target) applied | failed | refused |
unreachable → completed | failed``, later ``reverted`` by a resume correction. Targets are the
known nodes in scope. A connected node gets the command at once; a disconnected one is marked
unreachable and gets it when it reconnects, until the correction expires. A dispatched target
without acknowledgement after ``ack_timeout_s`` becomes unreachable; a late ack still counts.

Everything runs on the controller's event loop; the store calls are short transactions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

from backstop.controller import metrics
from backstop.controller.store.base import Store
from backstop.core.errors import Conflict, InvalidInput, NotFound
from backstop.core.ids import new_correction_id
from backstop.core.models import (
    Action,
    ActionParams,
    CommandAck,
    Correction,
    CorrectionSpec,
    CorrectionState,
    Scope,
    TargetState,
)
from backstop.core.scope import node_in_scope, validate_scope
from backstop.core.settings import ControllerSettings
from backstop.wire.convert import validate_params

log = logging.getLogger(__name__)

MAX_REASON_LEN = 1024
_UNSUCCESSFUL = (TargetState.FAILED, TargetState.REFUSED)


class AgentLink(Protocol):
    """A connected agent's outgoing side, as the gateway provides it."""

    node_id: str

    def send_command(self, sequence: int, spec: CorrectionSpec) -> None:
        """Queue a command for the agent; never blocks."""
        ...

    def close(self, reason: str) -> None:
        """End the stream (e.g. the node connected again elsewhere)."""
        ...


@dataclass(frozen=True, slots=True)
class CreateRequest:
    action: Action
    scope: Scope
    reason: str
    issuer: str
    ttl_s: float = 0.0
    params: ActionParams = field(default_factory=ActionParams)


class CorrectionsEngine:
    """Creates corrections, dispatches them to agents, collects acks, publishes progress."""

    def __init__(
        self,
        store: Store,
        settings: ControllerSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self._links: dict[str, AgentLink] = {}
        self._dispatched_at: dict[tuple[str, str], float] = {}
        self._watchers: dict[str, set[asyncio.Queue[Correction]]] = {}

    # --- agents --------------------------------------------------------------------------

    def attach(self, link: AgentLink) -> None:
        """Register a connected agent; an older stream of the same node is closed."""
        old = self._links.get(link.node_id)
        self._links[link.node_id] = link
        if old is not None and old is not link:
            old.close("the node connected again on a newer stream")
        metrics.AGENTS_CONNECTED.set(len(self._links))

    def detach(self, link: AgentLink) -> bool:
        """Forget a stream; True if it was the node's current one."""
        if self._links.get(link.node_id) is link:
            del self._links[link.node_id]
            metrics.AGENTS_CONNECTED.set(len(self._links))
            return True
        return False

    def connected(self, node_id: str) -> bool:
        return node_id in self._links

    def redeliver(self, node_id: str, after_sequence: int) -> int:
        """Send a reconnecting agent every unacknowledged, unexpired command it has not seen."""
        link = self._links.get(node_id)
        if link is None:
            return 0
        now = self._clock()
        pending = self._store.pending_commands(node_id, after_sequence, now)
        for cmd in pending:
            self._store.update_target(
                cmd.spec.correction_id,
                node_id,
                TargetState.DISPATCHED,
                message="redelivered after reconnect",
                outcomes=(),
                now_s=now,
            )
            self._dispatched_at[(cmd.spec.correction_id, node_id)] = now
            link.send_command(cmd.sequence, cmd.spec)
            self._publish(cmd.spec.correction_id)
        if pending:
            log.info("redelivered commands", extra={"node": node_id, "count": len(pending)})
        return len(pending)

    # --- requests ------------------------------------------------------------------------

    def create(self, request: CreateRequest) -> Correction:
        if request.action is Action.RESUME:
            raise InvalidInput("use resume ID to undo a correction")
        validate_scope(request.scope)
        validate_params(request.params)
        reason = request.reason.strip()
        if not reason:
            raise InvalidInput("a reason is required: say why (it goes into the audit record)")
        if len(reason) > MAX_REASON_LEN:
            raise InvalidInput(f"reason is longer than {MAX_REASON_LEN} characters")
        if not request.issuer:
            raise InvalidInput("the issuer is missing")
        known = {n.info.node_id for n in self._store.list_nodes()}
        unknown = [n for n in request.scope.node_ids if n not in known]
        if unknown:
            raise NotFound(f"unknown node(s): {', '.join(unknown)}; see `backstop nodes`")
        now = self._clock()
        ttl = request.ttl_s if request.ttl_s > 0 else self._settings.default_ttl_s
        spec = CorrectionSpec(
            correction_id=new_correction_id(),
            action=request.action,
            scope=request.scope,
            reason=reason,
            issuer=request.issuer,
            created_at_s=now,
            expires_at_s=now + ttl,
            params=request.params,
        )
        self._store.create_correction(spec, CorrectionState.APPROVED, now)
        metrics.CORRECTIONS.labels(action=spec.action.value).inc()
        log.info(
            "correction created",
            extra={"correction_id": spec.correction_id, "action": spec.action.value},
        )
        nodes = [n for n in sorted(known) if node_in_scope(spec.scope, n)]
        return self._dispatch(spec, nodes)

    def resume(self, correction_id: str, reason: str, issuer: str) -> Correction:
        original = self.get(correction_id)
        if not original.spec.action.revertible:
            raise Conflict(
                f"{correction_id} is a {original.spec.action.value}; it cannot be undone by resume"
            )
        if original.state is CorrectionState.REVERTED:
            raise Conflict(f"{correction_id} was already reverted")
        if original.spec.reverts:
            raise Conflict(f"{correction_id} is itself a resume")
        now = self._clock()
        spec = CorrectionSpec(
            correction_id=new_correction_id(),
            action=Action.RESUME,
            scope=original.spec.scope,
            reason=reason.strip() or f"resume {correction_id}",
            issuer=issuer,
            created_at_s=now,
            expires_at_s=now + self._settings.default_ttl_s,
            reverts=correction_id,
        )
        self._store.create_correction(spec, CorrectionState.APPROVED, now)
        metrics.CORRECTIONS.labels(action=spec.action.value).inc()
        return self._dispatch(spec, [t.node_id for t in original.targets])

    def get(self, correction_id: str) -> Correction:
        found = self._store.get_correction(correction_id)
        if found is None:
            raise NotFound(f"no correction {correction_id!r}; see `backstop corrections`")
        return found

    # --- dispatch and acks ---------------------------------------------------------------

    def _dispatch(self, spec: CorrectionSpec, nodes: list[str]) -> Correction:
        now = self._clock()
        for node_id in nodes:
            link = self._links.get(node_id)
            if link is None:
                seq = self._store.add_target(
                    spec.correction_id, node_id, TargetState.UNREACHABLE, now
                )
                self._store.update_target(
                    spec.correction_id,
                    node_id,
                    TargetState.UNREACHABLE,
                    message="agent not connected; delivered if it reconnects before expiry",
                    outcomes=(),
                    now_s=now,
                )
                continue
            seq = self._store.add_target(spec.correction_id, node_id, TargetState.DISPATCHED, now)
            self._dispatched_at[(spec.correction_id, node_id)] = now
            link.send_command(seq, spec)
        self._store.set_correction_state(
            spec.correction_id, CorrectionState.DISPATCHED, f"sent to {len(nodes)} node(s)", now
        )
        self._settle(spec.correction_id)
        return self.get(spec.correction_id)

    def on_ack(self, node_id: str, ack: CommandAck) -> None:
        now = self._clock()
        target = self._store.update_target(
            ack.correction_id,
            node_id,
            ack.state,
            message=ack.message,
            outcomes=ack.outcomes,
            now_s=now,
        )
        if target is None:
            log.warning(
                "ack for a correction this node was not sent",
                extra={"node": node_id, "correction_id": ack.correction_id},
            )
            return
        sent = self._dispatched_at.pop((ack.correction_id, node_id), None)
        if sent is not None:
            metrics.ACK_SECONDS.observe(max(0.0, now - sent))
        metrics.ACKS.labels(state=ack.state.value).inc()
        self._settle(ack.correction_id)

    def check_deadlines(self) -> None:
        """Mark dispatched targets without an ack after the timeout as unreachable."""
        now = self._clock()
        overdue = [
            key
            for key, sent in self._dispatched_at.items()
            if now - sent > self._settings.ack_timeout_s
        ]
        for correction_id, node_id in overdue:
            del self._dispatched_at[(correction_id, node_id)]
            self._store.update_target(
                correction_id,
                node_id,
                TargetState.UNREACHABLE,
                message=f"no acknowledgement within {self._settings.ack_timeout_s:g} s",
                outcomes=(),
                now_s=now,
            )
            self._settle(correction_id)

    def recover(self) -> None:
        """After a restart: restart the ack clock of every dispatched target of open corrections."""
        now = self._clock()
        for correction in self._store.list_open_corrections():
            for target in correction.targets:
                if target.state is TargetState.DISPATCHED:
                    self._dispatched_at[(correction.spec.correction_id, target.node_id)] = now

    def _settle(self, correction_id: str) -> None:
        """Recompute a correction's state from its targets; publish the change."""
        correction = self.get(correction_id)
        states = Counter(t.state for t in correction.targets)
        summary = ", ".join(f"{n} {s.value}" for s, n in sorted(states.items())) or "no targets"
        if not correction.targets:
            summary = "no nodes in scope; nothing to do"
        all_final = all(t.state.terminal for t in correction.targets)
        now = self._clock()
        if correction.state is CorrectionState.REVERTED:
            self._store.set_correction_state(
                correction_id, correction.state, correction.message, now
            )
        elif all_final:
            final = (
                CorrectionState.FAILED
                if any(states[s] for s in _UNSUCCESSFUL)
                else CorrectionState.COMPLETED
            )
            self._store.set_correction_state(correction_id, final, summary, now, completed=True)
            if correction.spec.reverts and final is CorrectionState.COMPLETED:
                self._mark_reverted(correction.spec.reverts, correction_id)
        else:
            self._store.set_correction_state(
                correction_id, CorrectionState.DISPATCHED, summary, now
            )
        self._publish(correction_id)

    def _mark_reverted(self, original_id: str, by: str) -> None:
        original = self._store.get_correction(original_id)
        if original is None or original.state is CorrectionState.REVERTED:
            return
        self._store.set_correction_state(
            original_id, CorrectionState.REVERTED, f"reverted by {by}", self._clock()
        )
        self._publish(original_id)

    # --- watching ------------------------------------------------------------------------

    def _publish(self, correction_id: str) -> None:
        queues = self._watchers.get(correction_id)
        if not queues:
            return
        snapshot = self.get(correction_id)
        for queue in queues:
            queue.put_nowait(snapshot)

    async def watch(self, correction_id: str) -> AsyncIterator[Correction]:
        """The correction now, then each change, until it is terminal."""
        queue: asyncio.Queue[Correction] = asyncio.Queue()
        self._watchers.setdefault(correction_id, set()).add(queue)
        try:
            current = self.get(correction_id)
            yield current
            while not current.state.terminal:
                current = await queue.get()
                yield current
        finally:
            watchers = self._watchers.get(correction_id)
            if watchers is not None:
                watchers.discard(queue)
                if not watchers:
                    del self._watchers[correction_id]
