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
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from backstop.controller import metrics
from backstop.controller.authz import Authorizer, Caller
from backstop.controller.fanout import Fanout, LocalFanout
from backstop.controller.store.base import NodeRecord, PendingCommand, Store
from backstop.core.errors import BackstopError, Conflict, InvalidInput, NotFound, PermissionDenied
from backstop.core.ids import new_correction_id
from backstop.core.models import (
    Action,
    ActionParams,
    CommandAck,
    Correction,
    CorrectionSpec,
    CorrectionState,
    Scope,
    SignatureRecord,
    TargetState,
)
from backstop.core.scope import node_in_scope, validate_scope
from backstop.core.settings import ControllerSettings
from backstop.core.text import validate_reason
from backstop.security import quorum
from backstop.security.identities import Role
from backstop.wire import convert
from backstop.wire.convert import validate_params

log = logging.getLogger(__name__)

MAX_REASON_LEN = 1024
SUMMARY_INTERVAL_S = 0.25
PUBLISH_INTERVAL_S = 0.05
REFRESH_INTERVAL_S = 0.05
MAX_CLOCK_SKEW_S = 300.0
MAX_TTL_S = 7 * 24 * 3600.0
_ID = re.compile(r"^cor-[0-9a-f]{8,40}$")
_UNSUCCESSFUL = (TargetState.FAILED, TargetState.REFUSED)


class AgentLink(Protocol):
    """A connected agent's outgoing side, as the gateway provides it."""

    node_id: str

    def send_command(
        self, sequence: int, spec_bytes: bytes, signatures: tuple[SignatureRecord, ...]
    ) -> None:
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
        authz: Authorizer | None = None,
        *,
        replica_id: str = "",
        fanout: Fanout | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self.authz = authz if authz is not None else Authorizer(None)
        self.replica_id = replica_id
        self._fanout: Fanout = fanout if fanout is not None else LocalFanout()
        self._links: dict[str, AgentLink] = {}
        self._sent: dict[str, int] = {}
        """Per connected node: the highest command sequence sent on its current stream."""
        self._refresh_pending: set[str] = set()
        self._dispatched_at: dict[tuple[str, str], float] = {}
        self._states: dict[str, dict[str, TargetState]] = {}
        self._summarised: dict[str, float] = {}
        self._publish_pending: set[str] = set()
        self._ack_queue: list[tuple[str, CommandAck]] = []
        self._ack_flush_scheduled = False
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
            self._sent.pop(link.node_id, None)
            metrics.AGENTS_CONNECTED.set(len(self._links))
            return True
        return False

    def disconnect(self, node_id: str, reason: str) -> None:
        """Close a node's stream, if it has one (e.g. its certificate was revoked)."""
        link = self._links.get(node_id)
        if link is not None:
            link.close(reason)

    def connected(self, node_id: str) -> bool:
        return node_id in self._links

    def redeliver(self, node_id: str, after_sequence: int) -> int:
        """Send a reconnecting agent every unacknowledged, unexpired command it has not seen."""
        link = self._links.get(node_id)
        if link is None:
            return 0
        now = self._clock()
        self._sent[node_id] = after_sequence
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
            self._send(link, cmd, now)
            self._publish(cmd.spec.correction_id)
        if pending:
            log.info("redelivered commands", extra={"node": node_id, "count": len(pending)})
        return len(pending)

    def _send(self, link: AgentLink, cmd: PendingCommand, now: float) -> None:
        self._dispatched_at[(cmd.spec.correction_id, cmd.node_id)] = now
        self._sent[cmd.node_id] = max(self._sent.get(cmd.node_id, 0), cmd.sequence)
        link.send_command(cmd.sequence, cmd.spec_bytes, cmd.signatures)

    # --- replicas ------------------------------------------------------------------------

    def on_replica_event(self, event: str, correction_id: str) -> None:
        """Another replica stored commands (``dispatch``) or acknowledgements (``settle``)."""
        try:
            if event == "dispatch":
                self._deliver_stored(correction_id)
            elif event == "settle" and correction_id not in self._refresh_pending:
                self._refresh_pending.add(correction_id)
                asyncio.get_running_loop().call_later(
                    REFRESH_INTERVAL_S, self._refresh, correction_id
                )
        except BackstopError:
            log.exception("could not follow another replica", extra={"event": event})

    def _deliver_stored(self, correction_id: str) -> None:
        """Send the correction's stored, unacknowledged commands to the agents held here."""
        now = self._clock()
        sent = 0
        for cmd in self._store.pending_for_correction(correction_id, now):
            link = self._links.get(cmd.node_id)
            if link is not None and cmd.sequence > self._sent.get(cmd.node_id, 0):
                self._send(link, cmd, now)
                sent += 1
        if sent:
            log.info(
                "sent commands stored by another replica",
                extra={"correction_id": correction_id, "count": sent},
            )

    def _refresh(self, correction_id: str) -> None:
        """Forget the cached progress of a correction and settle it from the store."""
        self._refresh_pending.discard(correction_id)
        self._states.pop(correction_id, None)
        try:
            self._settle(correction_id)
        except BackstopError:
            log.exception("could not refresh a correction", extra={"correction_id": correction_id})

    def resync(self) -> None:
        """Send every agent held here its stored, unsent commands (events may have been missed)."""
        now = self._clock()
        for node_id, link in list(self._links.items()):
            for cmd in self._store.pending_commands(node_id, self._sent.get(node_id, 0), now):
                self._send(link, cmd, now)

    def _remote_nodes(self, records: Mapping[str, NodeRecord]) -> set[str]:
        """Nodes whose stream another live replica holds."""
        if not self._fanout.shared:
            return set()
        return {
            node_id
            for node_id, r in records.items()
            if r.connected and r.replica not in ("", self.replica_id)
        }

    # --- requests ------------------------------------------------------------------------

    def audit(self, actor: str, event: str, subject: str, **details: object) -> None:
        """Append to the audit chain; called before the decision takes effect."""
        self._store.append_audit(
            ts=self._clock(), actor=actor, action=event, subject=subject, details=details
        )

    def create(self, request: CreateRequest, caller: Caller | None = None) -> Correction:
        """An unsigned correction: only in open mode (no trust policy)."""
        caller = caller or Caller(request.issuer or "anonymous", Role.ADMIN, authenticated=False)
        if self.authz.secure:
            self._refuse(caller, "correction.refused", "-", "corrections must be signed (--key)")
        if request.action is Action.RESUME:
            raise InvalidInput("use resume ID to undo a correction")
        now = self._clock()
        ttl = request.ttl_s if request.ttl_s > 0 else self._settings.default_ttl_s
        spec = CorrectionSpec(
            correction_id=new_correction_id(),
            action=request.action,
            scope=request.scope,
            reason=request.reason.strip(),
            issuer=request.issuer,
            created_at_s=now,
            expires_at_s=now + ttl,
            params=request.params,
        )
        return self._admit(spec, convert.spec_bytes(spec), (), caller)

    def create_signed(
        self, data: bytes, signatures: tuple[SignatureRecord, ...], caller: Caller
    ) -> Correction:
        """A correction built and signed by its issuer; these exact bytes are what agents get."""
        spec = convert.spec_from_bytes(data)
        if spec.action is Action.RESUME:
            original = self.get(spec.reverts) if spec.reverts else None
            if original is None:
                raise InvalidInput("a resume must name the correction it reverts")
            self._check_resumable(original)
            if spec.scope != original.spec.scope:
                raise InvalidInput("a resume must keep the scope of the correction it reverts")
            return self._admit(spec, data, signatures, caller, nodes=_targets_of(original))
        return self._admit(spec, data, signatures, caller)

    def _check_spec(self, spec: CorrectionSpec, caller: Caller) -> None:
        now = self._clock()
        if not _ID.match(spec.correction_id):
            raise InvalidInput(f"malformed correction id {spec.correction_id!r}")
        if abs(spec.created_at_s - now) > MAX_CLOCK_SKEW_S:
            raise InvalidInput(
                f"created_at is {spec.created_at_s - now:+.0f} s from the controller's clock; "
                f"check the clock (at most {MAX_CLOCK_SKEW_S:g} s skew)"
            )
        if spec.expires_at_s <= now:
            raise InvalidInput("the correction has already expired")
        if spec.expires_at_s - spec.created_at_s > MAX_TTL_S:
            raise InvalidInput(f"expiry is more than {MAX_TTL_S / 86400:g} days away")
        validate_scope(spec.scope)
        validate_params(spec.params)
        validate_reason(spec.reason, MAX_REASON_LEN)
        if len(spec.reason) > MAX_REASON_LEN:
            raise InvalidInput(f"reason is longer than {MAX_REASON_LEN} characters")
        if not spec.issuer:
            raise InvalidInput("the issuer is missing")
        if caller.authenticated and spec.issuer != caller.name:
            raise PermissionDenied(f"{caller.name} cannot issue a correction as {spec.issuer}")

    def _admit(
        self,
        spec: CorrectionSpec,
        data: bytes,
        signatures: tuple[SignatureRecord, ...],
        caller: Caller,
        nodes: list[str] | None = None,
    ) -> Correction:
        """Validate, decide (approved or waiting for a quorum), audit, store, dispatch."""
        try:
            self._check_spec(spec, caller)
            self.authz.require(caller, Role.OPERATOR, f"a {spec.action.value}")
            known = {r.info.node_id: r for r in self._store.list_nodes()}
            unknown = [n for n in spec.scope.node_ids if n not in known]
            if unknown:
                raise NotFound(f"unknown node(s): {', '.join(unknown)}; see `backstop nodes`")
            required, approvers = self._verify(spec, data, signatures)
        except BackstopError as exc:
            self.audit(
                caller.name,
                "correction.refused",
                spec.correction_id,
                action=spec.action.value,
                reason=exc.message,
            )
            raise
        waiting = len(approvers) < required
        state = CorrectionState.PROPOSED if waiting else CorrectionState.APPROVED
        self.audit(
            caller.name,
            "correction.propose" if waiting else "correction.create",
            spec.correction_id,
            action=spec.action.value,
            scope=convert.scope_to_pb(spec.scope).SerializeToString(deterministic=True).hex(),
            reason=spec.reason,
            issuer=spec.issuer,
            reverts=spec.reverts,
            signers=[f"{s.signer}:{s.role}:{s.key_id}" for s in signatures],
            approvals=f"{len(approvers)} of {required}",
        )
        self._store.create_correction(
            spec,
            state,
            self._clock(),
            spec_bytes=data,
            signatures=signatures,
            approvals_required=required,
        )
        metrics.CORRECTIONS.labels(action=spec.action.value).inc()
        log.info(
            "correction created",
            extra={
                "correction_id": spec.correction_id,
                "action": spec.action.value,
                "state": state.value,
            },
        )
        if waiting:
            self._store.set_correction_state(
                spec.correction_id,
                state,
                f"waiting for approvals: {len(approvers)} of {required}",
                self._clock(),
            )
            return self.get(spec.correction_id)
        if nodes is None:
            nodes = sorted(n for n in known if node_in_scope(spec.scope, n))
        return self._dispatch(spec, nodes, known)

    def _verify(
        self, spec: CorrectionSpec, data: bytes, signatures: tuple[SignatureRecord, ...]
    ) -> tuple[int, tuple[str, ...]]:
        """Approvals required and counted; PermissionDenied when the signatures do not hold."""
        policy = self.authz.policy()
        if policy is None:
            return 0, ()
        verdict = quorum.check(
            data,
            issuer=spec.issuer,
            action=spec.action.value,
            signatures=signatures,
            policy=policy,
        )
        if not verdict.issuer_ok or (not verdict.ok and "signature" in verdict.reason):
            raise PermissionDenied(verdict.reason)
        return verdict.required, verdict.approvers

    def approve(
        self, correction_id: str, signature: SignatureRecord | None, caller: Caller
    ) -> Correction:
        correction = self.get(correction_id)
        policy = self.authz.policy()
        try:
            if policy is None:
                raise Conflict(
                    f"{correction_id} needs no approval: this controller has no trust policy"
                )
            self.authz.require(caller, Role.APPROVER, "approving")
            if correction.state is not CorrectionState.PROPOSED:
                raise Conflict(
                    f"{correction_id} is {correction.state.value}, not waiting for approval"
                )
            if signature is None:
                raise PermissionDenied("an approval must be signed (--key)")
            if signature.signer != caller.name or signature.role != "approver":
                raise PermissionDenied(f"{caller.name} can only add their own approver signature")
            if caller.name == correction.spec.issuer:
                raise PermissionDenied(
                    f"{caller.name} issued {correction_id} and cannot approve it"
                )
            if caller.name in correction.approvers:
                raise Conflict(f"{caller.name} already approved {correction_id}")
            data = self._store.spec_bytes(correction_id)
            problem = quorum.signature_problem(data, signature, policy)
            if problem:
                raise PermissionDenied(problem)
        except BackstopError as exc:
            self.audit(caller.name, "approval.refused", correction_id, reason=exc.message)
            raise
        signatures = (*correction.signatures, signature)
        verdict = quorum.check(
            data,
            issuer=correction.spec.issuer,
            action=correction.spec.action.value,
            signatures=signatures,
            policy=policy,
        )
        self.audit(
            caller.name,
            "correction.approve",
            correction_id,
            key_id=signature.key_id,
            approvals=f"{len(verdict.approvers)} of {verdict.required}",
        )
        self._store.add_signature(correction_id, signature)
        if not verdict.ok:
            self._store.set_correction_state(
                correction_id,
                CorrectionState.PROPOSED,
                f"waiting for approvals: {verdict.progress}",
                self._clock(),
            )
            self._publish(correction_id)
            return self.get(correction_id)
        self._store.set_correction_state(
            correction_id, CorrectionState.APPROVED, f"approved: {verdict.progress}", self._clock()
        )
        known = {r.info.node_id: r for r in self._store.list_nodes()}
        return self._dispatch(
            correction.spec,
            sorted(n for n in known if node_in_scope(correction.spec.scope, n)),
            known,
        )

    def _refuse(self, caller: Caller, action: str, subject: str, reason: str) -> None:
        self.audit(caller.name, action, subject, reason=reason)
        raise PermissionDenied(reason)

    def _check_resumable(self, original: Correction) -> None:
        cid = original.spec.correction_id
        if not original.spec.action.revertible:
            raise Conflict(
                f"{cid} is a {original.spec.action.value}; it cannot be undone by resume"
            )
        if original.state is CorrectionState.REVERTED:
            raise Conflict(f"{cid} was already reverted")
        if original.spec.reverts:
            raise Conflict(f"{cid} is itself a resume")

    def resume(
        self, correction_id: str, reason: str, issuer: str, caller: Caller | None = None
    ) -> Correction:
        """An unsigned resume: only in open mode."""
        caller = caller or Caller(issuer or "anonymous", Role.ADMIN, authenticated=False)
        if self.authz.secure:
            self._refuse(
                caller, "correction.refused", correction_id, "a resume must be signed (--key)"
            )
        original = self.get(correction_id)
        self._check_resumable(original)
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
        return self._admit(spec, convert.spec_bytes(spec), (), caller, nodes=_targets_of(original))

    def get(self, correction_id: str) -> Correction:
        found = self._store.get_correction(correction_id)
        if found is None:
            raise NotFound(f"no correction {correction_id!r}; see `backstop corrections`")
        return found

    # --- dispatch and acks ---------------------------------------------------------------

    def _dispatch(
        self, spec: CorrectionSpec, nodes: list[str], known: Mapping[str, NodeRecord]
    ) -> Correction:
        """Send to the ``nodes`` in scope; ``known`` is every node's record, as just read."""
        now = self._clock()
        cid = spec.correction_id
        data = self._store.spec_bytes(cid)
        signatures = self.get(cid).signatures
        self.audit("controller", "correction.dispatch", cid, nodes=nodes)
        away = "agent not connected; delivered if it reconnects before expiry"
        remote = self._remote_nodes(known)
        plan = [
            (n, TargetState.DISPATCHED, "")
            if n in self._links
            else (n, TargetState.DISPATCHED, "sent through another replica")
            if n in remote
            else (n, TargetState.UNREACHABLE, away)
            for n in nodes
        ]
        sequences = self._store.add_targets(cid, plan, now)
        self._states[cid] = {n: state for n, state, _ in plan}
        for node_id, state, _ in plan:
            if state is not TargetState.DISPATCHED:
                continue
            link = self._links.get(node_id)
            if link is None:  # another replica sends it; this one still keeps the deadline
                self._dispatched_at[(cid, node_id)] = now
                continue
            self._send(
                link, PendingCommand(node_id, sequences[node_id], spec, data, signatures), now
            )
        if self._fanout.shared:
            # always: a node may have moved to another replica before this one noticed
            self._fanout.publish("dispatch", cid)
        self._store.set_correction_state(
            cid, CorrectionState.DISPATCHED, f"sent to {len(nodes)} node(s)", now
        )
        self._settle(cid, force=True)
        return self.get(cid)

    def on_ack(self, node_id: str, ack: CommandAck) -> None:
        """Record one acknowledgement now (see :meth:`queue_ack` for the batched path)."""
        self.on_acks([(node_id, ack)])

    def on_acks(self, acks: list[tuple[str, CommandAck]]) -> None:
        """Record acknowledgements (and their audit entries) in one transaction, then settle."""
        now = self._clock()
        applied = self._store.record_acks(acks, now)
        known = {(n, a.correction_id) for n, a in applied}
        for node_id, ack in acks:
            if (node_id, ack.correction_id) not in known and self._store.get_target(
                ack.correction_id, node_id
            ) is None:
                log.warning(
                    "ack for a correction this node was not sent",
                    extra={"node": node_id, "correction_id": ack.correction_id},
                )
        touched: set[str] = set()
        for node_id, ack in applied:
            self._target_state(ack.correction_id)[node_id] = ack.state
            sent = self._dispatched_at.pop((ack.correction_id, node_id), None)
            if sent is not None:
                metrics.ACK_SECONDS.observe(max(0.0, now - sent))
            metrics.ACKS.labels(state=ack.state.value).inc()
            touched.add(ack.correction_id)
        for correction_id in touched:
            self._settle(correction_id)
            if self._fanout.shared:
                self._fanout.publish("settle", correction_id)

    def queue_ack(self, node_id: str, ack: CommandAck) -> None:
        """Batch acknowledgements arriving together into one transaction (the gateway's path)."""
        self._ack_queue.append((node_id, ack))
        if not self._ack_flush_scheduled:
            self._ack_flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_acks)

    def _flush_acks(self) -> None:
        self._ack_flush_scheduled = False
        batch, self._ack_queue = self._ack_queue, []
        try:
            self.on_acks(batch)
        except BackstopError:
            log.exception("could not record acknowledgements", extra={"count": len(batch)})

    def _target_state(self, correction_id: str) -> dict[str, TargetState]:
        """Per-node target states of a correction, cached (loaded once after a restart)."""
        states = self._states.get(correction_id)
        if states is None:
            states = self._states[correction_id] = self._store.target_states(correction_id)
        return states

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
            changed = self._store.update_target(
                correction_id,
                node_id,
                TargetState.UNREACHABLE,
                message=f"no acknowledgement within {self._settings.ack_timeout_s:g} s",
                outcomes=(),
                now_s=now,
                only_if=TargetState.DISPATCHED,
            )
            if changed is None:  # acknowledged meanwhile, through another replica
                self._states.pop(correction_id, None)
            else:
                self._target_state(correction_id)[node_id] = TargetState.UNREACHABLE
            self._settle(correction_id)
            if changed is not None and self._fanout.shared:
                self._fanout.publish("settle", correction_id)

    def recover(self) -> None:
        """After a restart: restart the ack clock of every dispatched target of open corrections."""
        now = self._clock()
        for correction in self._store.list_open_corrections():
            for target in correction.targets:
                if target.state is TargetState.DISPATCHED:
                    self._dispatched_at[(correction.spec.correction_id, target.node_id)] = now

    def _settle(self, correction_id: str, *, force: bool = False) -> None:
        """Move a correction to its final state once every target has answered.

        Progress is kept in memory (one entry per target) so an ack costs O(1), not a reload
        of every target; the stored summary is refreshed at most every SUMMARY_INTERVAL_S.
        """
        states = self._target_state(correction_id)
        counts = Counter(states.values())
        summary = ", ".join(f"{n} {s.value}" for s, n in sorted(counts.items()))
        if not states:
            summary = "no nodes in scope; nothing to do"
        now = self._clock()
        if all(s.terminal for s in states.values()):
            current = self.get(correction_id)
            final = (
                CorrectionState.FAILED
                if any(counts[s] for s in _UNSUCCESSFUL)
                else CorrectionState.COMPLETED
            )
            settled = (current.state, current.message) == (final, summary)
            if current.state is not CorrectionState.REVERTED and not settled:
                self._store.set_correction_state(correction_id, final, summary, now, completed=True)
                if current.spec.reverts and final is CorrectionState.COMPLETED:
                    self._mark_reverted(current.spec.reverts, correction_id)
            self._publish(correction_id, now=True)
            return
        if force or now - self._summarised.get(correction_id, 0.0) >= SUMMARY_INTERVAL_S:
            self._summarised[correction_id] = now
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

    def _publish(self, correction_id: str, *, now: bool = False) -> None:
        """Send watchers the correction's state; coalesced to one snapshot per interval."""
        if not self._watchers.get(correction_id):
            return
        if now:
            self._publish_now(correction_id)
            return
        if correction_id in self._publish_pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._publish_now(correction_id)
            return
        self._publish_pending.add(correction_id)
        loop.call_later(PUBLISH_INTERVAL_S, self._publish_now, correction_id)

    def _publish_now(self, correction_id: str) -> None:
        self._publish_pending.discard(correction_id)
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


def _targets_of(correction: Correction) -> list[str]:
    return [t.node_id for t in correction.targets]
