"""Getting commands to agents: the links of connected agents, dispatch of an admitted
correction to its targets, redelivery when an agent connects again, and following what other
replicas stored (their dispatches and acknowledgements). What happens once commands are out,
acks and deadlines, is ``progress``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Protocol

from backstop.controller import metrics
from backstop.controller.corrections.progress import Settler
from backstop.controller.corrections.records import Records
from backstop.controller.corrections.tracking import Progress
from backstop.controller.fanout import Fanout
from backstop.controller.policy_authorities import PolicyAuthorities
from backstop.controller.store.base import NodeRecord, PendingCommand
from backstop.core.errors import BackstopError
from backstop.core.models import (
    AuditHead,
    Correction,
    CorrectionSpec,
    CorrectionState,
    PolicyAuthority,
    SignatureRecord,
    TargetState,
)
from backstop.core.times import rfc3339

log = logging.getLogger(__name__)

REFRESH_INTERVAL_S = 0.05


class AgentLink(Protocol):
    """A connected agent's outgoing side, as the gateway provides it."""

    node_id: str

    def send_command(
        self,
        sequence: int,
        spec_bytes: bytes,
        signatures: tuple[SignatureRecord, ...],
        audit_head: AuditHead,
        authority: PolicyAuthority | None = None,
    ) -> None:
        """Queue a command (with the controller's audit head when sent, and for a correction
        a policy started the policy that authorises it); never blocks."""
        ...

    def close(self, reason: str) -> None:
        """End the stream (e.g. the node connected again elsewhere)."""
        ...


class Delivery:
    def __init__(
        self,
        records: Records,
        tracking: Progress,
        settler: Settler,
        fanout: Fanout,
        replica_id: str,
    ) -> None:
        self._records = records
        self._store = records.store
        self._clock = records.clock
        self._progress = tracking
        self._settler = settler
        self._fanout = fanout
        self._replica_id = replica_id
        self._links: dict[str, AgentLink] = {}
        self._sent: dict[str, int] = {}
        """Per connected node: the highest command sequence sent on its current stream."""
        self._refresh_pending: set[str] = set()
        self._authorities = PolicyAuthorities(self._store)

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
        self._records.audit("controller", "command.redeliver", node_id, corrections=cids)
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
            self._records.publish(cmd.spec.correction_id)
        log.info("redelivered commands", extra={"node": node_id, "count": len(pending)})
        return len(pending)

    def _send(self, link: AgentLink, cmd: PendingCommand, now: float, head: AuditHead) -> None:
        self._progress.sent(cmd.spec.correction_id, cmd.node_id, now)
        self._sent[cmd.node_id] = max(self._sent.get(cmd.node_id, 0), cmd.sequence)
        authority = self._authorities.of(cmd.spec.policy_digest)
        link.send_command(cmd.sequence, cmd.spec_bytes, cmd.signatures, head, authority)

    # --- dispatch ------------------------------------------------------------------------

    def dispatch(
        self, spec: CorrectionSpec, nodes: list[str], known: Mapping[str, NodeRecord]
    ) -> Correction:
        """Send to the ``nodes`` in scope; ``known`` is every node's record, as just read."""
        now = self._clock()
        cid = spec.correction_id
        data = self._store.spec_bytes(cid)
        signatures = self._records.get(cid).signatures
        self._records.audit("controller", "correction.dispatch", cid, nodes=nodes)
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
        self._settler.settle(cid, force=True)
        return self._records.get(cid)

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
            self._settler.settle(correction_id)
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
            if r.connected and r.replica not in ("", self._replica_id)
        }
