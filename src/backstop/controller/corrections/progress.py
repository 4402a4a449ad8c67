"""How delivered corrections progress: acknowledgements recorded (one at a time or batched),
ack deadlines and expiry enforced, and a correction settled into its final state once its
targets' outcomes add up (``settling``); a completed resume marks what it undid reverted. The
in-memory view of targets is ``tracking``; other replicas are told through the fanout.
"""

from __future__ import annotations

import asyncio
import logging

from backstop.controller import metrics
from backstop.controller.corrections import settling
from backstop.controller.corrections.records import Records
from backstop.controller.corrections.tracking import Progress
from backstop.controller.fanout import Fanout
from backstop.controller.store.acks import unused_ack
from backstop.core.errors import BackstopError
from backstop.core.models import CommandAck, CorrectionState, TargetState
from backstop.core.settings import ControllerSettings
from backstop.core.times import rfc3339

log = logging.getLogger(__name__)

EXPIRY_SCAN_INTERVAL_S = 1.0


class Settler:
    def __init__(
        self,
        records: Records,
        tracking: Progress,
        settings: ControllerSettings,
        fanout: Fanout,
    ) -> None:
        self._records = records
        self._store = records.store
        self._clock = records.clock
        self._progress = tracking
        self._settings = settings
        self._fanout = fanout
        self._expiry_scanned = 0.0
        self._ack_queue: list[tuple[str, CommandAck]] = []
        self._ack_flush_scheduled = False

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
            self.settle(correction_id)
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
            self.settle(correction_id)
            if changed is not None and self._fanout.shared:
                self._fanout.publish("settle", correction_id)
        for correction_id in self._progress.take_stale():
            self.settle(correction_id, force=True)
        if now - self._expiry_scanned >= EXPIRY_SCAN_INTERVAL_S:
            self._expiry_scanned = now
            for correction_id in self._store.expired_open_corrections(now):
                self._expire(correction_id)

    def _expire(self, correction_id: str) -> None:
        """Its expiry passed: undelivered targets stay unreachable, the correction expires."""
        current = self._records.get(correction_id)
        if current.state.terminal:
            return
        nodes = settling.undelivered(current.targets)
        if current.targets and not nodes:  # every target answered: it settles instead
            self._progress.reload(correction_id)
            self.settle(correction_id, expired=False)
            return
        now = self._clock()
        message = settling.expiry_message(current, nodes)
        self._records.audit("controller", "correction.expired", correction_id, undelivered=nodes)
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
        self._records.publish(correction_id, now=True)
        if self._fanout.shared:
            self._fanout.publish("settle", correction_id)

    def recover(self) -> None:
        """After a restart: restart the ack clock of every dispatched target of open corrections."""
        self._progress.recover(self._store.list_open_corrections(), self._clock())

    def settle(self, correction_id: str, *, force: bool = False, expired: bool = True) -> None:
        """Move a correction to its final state once every target has a final outcome
        (``settling``); past its expiry with targets outstanding, expire it.

        Progress is kept in memory (``tracking``) so an ack costs O(1); the stored summary is
        refreshed at most every SUMMARY_INTERVAL_S. A correction in a final state never changes
        again (a late ack after its expiry updates only its target).
        """
        states = self._progress.states(correction_id)
        now = self._clock()
        if all(s.terminal for s in states.values()):
            current = self._records.get(correction_id)
            if not current.state.terminal:
                final, message = settling.final_outcome(current)
                self._records.audit(
                    "controller", "correction.settle", correction_id, state=final.value,
                    message=message,
                )  # fmt: skip
                self._store.set_correction_state(correction_id, final, message, now, completed=True)
                if current.spec.reverts and final is CorrectionState.COMPLETED:
                    self._mark_reverted(current.spec.reverts, correction_id)
            self._progress.forget(correction_id)
            self._records.publish(correction_id, now=True)
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
        self._records.publish(correction_id)

    def _mark_reverted(self, original_id: str, by: str) -> None:
        """A resume of ``original_id`` completed: only then is the original reverted."""
        original = self._store.get_correction(original_id)
        if original is None or original.state is CorrectionState.REVERTED:
            return
        self._records.audit("controller", "correction.reverted", original_id, by=by)
        self._store.set_correction_state(
            original_id, CorrectionState.REVERTED, f"reverted by {by}", self._clock()
        )
        self._records.publish(original_id)
