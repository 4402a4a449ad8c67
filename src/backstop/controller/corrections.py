"""The corrections engine: turns a request into commands and drives it to completion.

Lifecycle (design brief §3): ``[proposed →] approved → dispatched → (per target) applied |
failed | refused → completed | failed``, or ``expired`` when its expiry passes with targets
undelivered; later ``reverted`` once a resume of it completes. Targets are the known nodes in
scope. A connected node gets the command at once; a disconnected one is marked unreachable and
gets it whenever it connects, until the correction expires. A dispatched target without an
acknowledgement after ``ack_timeout_s`` becomes unreachable too. Unreachable is not final: a
late ack still counts. Applied, failed and refused are: no later ack changes them. How targets
add up is ``settling``; which corrections are admitted (undo as guarded as do) ``admission``.

Everything runs on the controller's event loop; the store calls are short transactions.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from backstop.controller import admission, approvals, metrics, settling
from backstop.controller.authz import Authorizer, Caller
from backstop.controller.fanout import Fanout, LocalFanout
from backstop.controller.progress import Progress
from backstop.controller.settling import rfc3339
from backstop.controller.store.acks import unused_ack
from backstop.controller.store.base import NodeRecord, PendingCommand, Store
from backstop.controller.watching import Watchers
from backstop.core.errors import BackstopError, Conflict, InvalidInput, NotFound, PermissionDenied
from backstop.core.ids import new_correction_id
from backstop.core.models import (
    Action,
    ActionParams,
    AuditHead,
    CommandAck,
    Correction,
    CorrectionSpec,
    CorrectionState,
    Scope,
    SignatureRecord,
    TargetState,
)
from backstop.core.scope import validate_scope
from backstop.core.settings import ControllerSettings
from backstop.core.text import validate_reason
from backstop.security import quorum
from backstop.security.command_check import MAX_CLOCK_SKEW_S, MAX_TTL_S
from backstop.security.identities import Role
from backstop.wire import convert
from backstop.wire.convert import validate_params

log = logging.getLogger(__name__)

REFRESH_INTERVAL_S = 0.05
EXPIRY_SCAN_INTERVAL_S = 1.0
_ID = re.compile(r"^cor-[0-9a-f]{8,40}$")


class AgentLink(Protocol):
    """A connected agent's outgoing side, as the gateway provides it."""

    node_id: str

    def send_command(
        self,
        sequence: int,
        spec_bytes: bytes,
        signatures: tuple[SignatureRecord, ...],
        audit_head: AuditHead,
    ) -> None:
        """Queue a command (with the controller's audit head when sent); never blocks."""
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
        self._progress = Progress(store)
        self._expiry_scanned = 0.0
        self._ack_queue: list[tuple[str, CommandAck]] = []
        self._ack_flush_scheduled = False
        self._watchers = Watchers(self.get)
        self._publish = self._watchers.publish

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

    def redeliver(self, node_id: str) -> int:
        """Send a connecting agent every unacknowledged, unexpired command stored for it.

        Whatever sequence its Hello names: sequences only order delivery (a store lost or
        restored starts them at 1 again), and the agent's replay protection rests on the signed
        corrections it has handled, so nothing the controller numbers can silence it.
        """
        link = self._links.get(node_id)
        if link is None:
            return 0
        now = self._clock()
        self._sent[node_id] = 0
        pending = self._store.pending_commands(node_id, 0, now)
        if not pending:
            return 0
        cids = [cmd.spec.correction_id for cmd in pending]
        self.audit("controller", "command.redeliver", node_id, corrections=cids)
        head = self._store.audit_head()
        for cmd in pending:
            self._store.update_target(
                cmd.spec.correction_id,
                node_id,
                TargetState.DISPATCHED,
                message="redelivered after reconnect",
                outcomes=(),
                now_s=now,
            )
            self._send(link, cmd, now, head)
            self._publish(cmd.spec.correction_id)
        log.info("redelivered commands", extra={"node": node_id, "count": len(pending)})
        return len(pending)

    def _send(self, link: AgentLink, cmd: PendingCommand, now: float, head: AuditHead) -> None:
        self._progress.sent(cmd.spec.correction_id, cmd.node_id, now)
        self._sent[cmd.node_id] = max(self._sent.get(cmd.node_id, 0), cmd.sequence)
        link.send_command(cmd.sequence, cmd.spec_bytes, cmd.signatures, head)

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
        head = self._store.audit_head()
        for cmd in self._store.pending_for_correction(correction_id, now):
            link = self._links.get(cmd.node_id)
            if link is not None and cmd.sequence > self._sent.get(cmd.node_id, 0):
                self._send(link, cmd, now, head)
                sent += 1
        if sent:
            log.info(
                "sent commands stored by another replica",
                extra={"correction_id": correction_id, "count": sent},
            )

    def _refresh(self, correction_id: str) -> None:
        """Forget the cached progress of a correction and settle it from the store."""
        self._refresh_pending.discard(correction_id)
        self._progress.reload(correction_id)
        try:
            self._settle(correction_id)
        except BackstopError:
            log.exception("could not refresh a correction", extra={"correction_id": correction_id})

    def resync(self) -> None:
        """Send every agent held here its stored, unsent commands (events may have been missed)."""
        now = self._clock()
        head = self._store.audit_head()
        for node_id, link in list(self._links.items()):
            for cmd in self._store.pending_commands(node_id, self._sent.get(node_id, 0), now):
                self._send(link, cmd, now, head)

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
        """A correction built and signed by its issuer; these exact bytes are what agents get.
        A resume among them (``reverts`` set) is checked by ``admission``."""
        return self._admit(convert.spec_from_bytes(data), data, signatures, caller)

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
        validate_reason(spec.reason)
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
    ) -> Correction:
        """Validate, decide (approved or waiting for a quorum), audit, store, dispatch."""
        try:
            self._check_spec(spec, caller)
            self.authz.require(caller, Role.OPERATOR, f"a {spec.action.value}")
            original = admission.check_new(spec, self._store.get_correction)
            known = {r.info.node_id: r for r in self._store.list_nodes()}
            unknown = [n for n in spec.scope.node_ids if n not in known]
            if unknown:
                raise NotFound(f"unknown node(s): {', '.join(unknown)}; see `backstop nodes`")
            undone = original.spec.action.value if original is not None else ""
            required, approvers = self._verify(spec, data, signatures, undone)
        except BackstopError as exc:
            self._refused(caller, spec, exc)
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
        try:
            self._store.create_correction(
                spec,
                state,
                self._clock(),
                spec_bytes=data,
                signatures=signatures,
                approvals_required=required,
            )
        except BackstopError as exc:  # stored meanwhile through another replica
            self._refused(caller, spec, exc)
            raise
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
        return self._dispatch(spec, admission.targets(spec, original, known), known)

    def _refused(self, caller: Caller, spec: CorrectionSpec, exc: BackstopError) -> None:
        self.audit(
            caller.name,
            "correction.refused",
            spec.correction_id,
            action=spec.action.value,
            reverts=spec.reverts,
            reason=exc.message,
        )

    def _verify(
        self,
        spec: CorrectionSpec,
        data: bytes,
        signatures: tuple[SignatureRecord, ...],
        undone: str,
    ) -> tuple[int, tuple[str, ...]]:
        """Approvals required and counted; PermissionDenied when the signatures do not hold.
        ``undone``: for a resume, the action it undoes (its quorum applies)."""
        policy = self.authz.policy()
        if policy is None:
            return 0, ()
        verdict = quorum.check(
            data,
            issuer=spec.issuer,
            action=spec.action.value,
            signatures=signatures,
            policy=policy,
            reverts_action=undone,
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
            data = self._store.spec_bytes(correction_id)
            signature, original = approvals.check(
                correction,
                signature,
                caller.name,
                policy=policy,
                spec_bytes=data,
                lookup=self._store.get_correction,
                now_s=self._clock(),
            )
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
            reverts_action=original.spec.action.value if original is not None else "",
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
            correction.spec, admission.targets(correction.spec, original, known), known
        )

    def _refuse(self, caller: Caller, action: str, subject: str, reason: str) -> None:
        self.audit(caller.name, action, subject, reason=reason)
        raise PermissionDenied(reason)

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
        return self._admit(spec, convert.spec_bytes(spec), (), caller)

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
        head = self._store.audit_head()  # once for every command of this dispatch
        away = f"agent not connected; delivery tried until {rfc3339(spec.expires_at_s)}"
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
        self._progress.start(cid, {n: state for n, state, _ in plan}, spec.expires_at_s)
        for node_id, state, _ in plan:
            if state is not TargetState.DISPATCHED:
                continue
            link = self._links.get(node_id)
            if link is None:  # another replica sends it; this one still keeps the deadline
                self._progress.sent(cid, node_id, now)
                continue
            command = PendingCommand(node_id, sequences[node_id], spec, data, signatures)
            self._send(link, command, now, head)
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
            if (node_id, ack.correction_id) not in known:
                self._log_unused_ack(node_id, ack)
        touched: set[str] = set()
        for node_id, ack in applied:
            self._progress.states(ack.correction_id)[node_id] = ack.state
            sent = self._progress.answered(ack.correction_id, node_id)
            if sent is not None:
                metrics.ACK_SECONDS.observe(max(0.0, now - sent))
            metrics.ACKS.labels(state=ack.state.value).inc()
            touched.add(ack.correction_id)
        for correction_id in touched:
            self._settle(correction_id)
            if self._fanout.shared:
                self._fanout.publish("settle", correction_id)

    def _log_unused_ack(self, node_id: str, ack: CommandAck) -> None:
        """Say why an ack changed nothing: not sent to this node, or a final outcome stays."""
        why = unused_ack(self._store.get_target(ack.correction_id, node_id), ack)
        if why:
            log.warning(why, extra={"node": node_id, "correction_id": ack.correction_id})

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

    def check_deadlines(self) -> None:
        """Mark dispatched targets without an ack after the timeout as unreachable (delivery
        goes on until expiry), store summaries that lag, and expire corrections whose expiry
        passed (at most every ``EXPIRY_SCAN_INTERVAL_S``; from the store, so after a restart
        too). The controller calls this periodically."""
        now = self._clock()
        for correction_id, node_id in self._progress.overdue(now, self._settings.ack_timeout_s):
            changed = self._store.update_target(
                correction_id,
                node_id,
                TargetState.UNREACHABLE,
                message=f"no acknowledgement within {self._settings.ack_timeout_s:g} s; "
                f"delivery tried until {rfc3339(self._progress.expiry(correction_id))}",
                outcomes=(),
                now_s=now,
                only_if=TargetState.DISPATCHED,
            )
            if changed is None:  # acknowledged meanwhile, through another replica
                self._progress.reload(correction_id)
            else:
                self._progress.states(correction_id)[node_id] = TargetState.UNREACHABLE
            self._settle(correction_id)
            if changed is not None and self._fanout.shared:
                self._fanout.publish("settle", correction_id)
        for correction_id in self._progress.take_stale():
            self._settle(correction_id, force=True)
        if now - self._expiry_scanned >= EXPIRY_SCAN_INTERVAL_S:
            self._expiry_scanned = now
            for correction_id in self._store.expired_open_corrections(now):
                self._expire(correction_id)

    def _expire(self, correction_id: str) -> None:
        """Its expiry passed: undelivered targets stay unreachable, the correction expires."""
        current = self.get(correction_id)
        if current.state.terminal:
            return
        nodes = settling.undelivered(current.targets)
        if current.targets and not nodes:  # every target answered: it settles instead
            self._progress.reload(correction_id)
            self._settle(correction_id, expired=False)
            return
        now = self._clock()
        message = settling.expiry_message(current, nodes)
        self.audit("controller", "correction.expired", correction_id, undelivered=nodes)
        left = f"not acknowledged before the expiry, {rfc3339(current.spec.expires_at_s)}"
        for target in current.targets:
            if not target.state.terminal:
                self._progress.answered(correction_id, target.node_id)
                self._store.update_target(
                    correction_id,
                    target.node_id,
                    TargetState.UNREACHABLE,
                    message=left,
                    outcomes=(),
                    now_s=now,
                    only_if=target.state,
                )
        self._store.set_correction_state(
            correction_id, CorrectionState.EXPIRED, message, now, completed=True
        )
        self._progress.forget(correction_id)
        log.info("correction expired", extra={"correction_id": correction_id, "nodes": nodes})
        self._publish(correction_id, now=True)
        if self._fanout.shared:
            self._fanout.publish("settle", correction_id)

    def recover(self) -> None:
        """After a restart: restart the ack clock of every dispatched target of open corrections."""
        self._progress.recover(self._store.list_open_corrections(), self._clock())

    def _settle(self, correction_id: str, *, force: bool = False, expired: bool = True) -> None:
        """Move a correction to its final state once every target has a final outcome
        (``settling``); past its expiry with targets outstanding, expire it.

        Progress is kept in memory (``progress``) so an ack costs O(1); the stored summary is
        refreshed at most every SUMMARY_INTERVAL_S. A correction in a final state never changes
        again (a late ack after its expiry updates only its target).
        """
        states = self._progress.states(correction_id)
        now = self._clock()
        if all(s.terminal for s in states.values()):
            current = self.get(correction_id)
            if not current.state.terminal:
                final, message = settling.final_outcome(current)
                self.audit(
                    "controller", "correction.settle", correction_id, state=final.value,
                    message=message,
                )  # fmt: skip
                self._store.set_correction_state(correction_id, final, message, now, completed=True)
                if current.spec.reverts and final is CorrectionState.COMPLETED:
                    self._mark_reverted(current.spec.reverts, correction_id)
            self._progress.forget(correction_id)
            self._publish(correction_id, now=True)
            return
        expires = self._progress.expiry(correction_id)
        if expired and now >= expires:
            self._expire(correction_id)
            return
        if self._progress.summary_due(correction_id, now, force):
            self._store.set_correction_state(
                correction_id,
                CorrectionState.DISPATCHED,
                settling.outstanding(states, expires),
                now,
            )
        self._publish(correction_id)

    def _mark_reverted(self, original_id: str, by: str) -> None:
        """A resume of ``original_id`` completed: only then is the original reverted."""
        original = self._store.get_correction(original_id)
        if original is None or original.state is CorrectionState.REVERTED:
            return
        self.audit("controller", "correction.reverted", original_id, by=by)
        self._store.set_correction_state(
            original_id, CorrectionState.REVERTED, f"reverted by {by}", self._clock()
        )
        self._publish(original_id)

    # --- watching ------------------------------------------------------------------------

    def watch(self, correction_id: str) -> AsyncIterator[Correction]:
        """The correction now, then each change, until it is terminal."""
        return self._watchers.watch(correction_id)
