"""The corrections engine: turns a request into commands and drives it to completion.

Lifecycle (design brief §3): ``[proposed →] approved → dispatched → (per target) applied |
failed | refused → completed | failed``, or ``expired`` when its expiry passes with targets
undelivered; later ``reverted`` once a resume of it completes. Targets are the known nodes in
scope. A connected node gets the command at once; a disconnected one is marked unreachable and
gets it whenever it connects, until the correction expires. A dispatched target without an
acknowledgement after ``ack_timeout_s`` becomes unreachable too. Unreachable is not final: a
late ack still counts. Applied, failed and refused are: no later ack changes them.

The engine is the one face its callers (gateway, control API, server) see; the work is its
collaborators', layered without cycles: ``admission`` (create, approve, resume) over
``delivery`` (agent links, dispatch, redelivery, replica events) over ``progress`` (acks,
deadlines, settling) over ``records`` (store, audit, watchers). Everything runs on the
controller's event loop; the store calls are short transactions.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

from backstop.controller.authz import Authorizer, Caller
from backstop.controller.corrections.admission import Admission, CreateRequest
from backstop.controller.corrections.delivery import AgentLink, Delivery
from backstop.controller.corrections.progress import Settler
from backstop.controller.corrections.records import Records
from backstop.controller.corrections.tracking import Progress
from backstop.controller.fanout import Fanout, LocalFanout
from backstop.controller.store.base import Store
from backstop.core.models import CommandAck, Correction, SignatureRecord
from backstop.core.settings import ControllerSettings


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
        self.authz = authz if authz is not None else Authorizer(None)
        self.replica_id = replica_id
        shared: Fanout = fanout if fanout is not None else LocalFanout()
        self._records = Records(store, clock)
        tracking = Progress(store)
        self._progress = Settler(self._records, tracking, settings, shared)
        self._delivery = Delivery(self._records, tracking, self._progress, shared, replica_id)
        self._admission = Admission(self._records, settings, self.authz, self._delivery)

    # --- agents and replicas -------------------------------------------------------------

    def attach(self, link: AgentLink) -> None:
        """Register a connected agent; an older stream of the same node is closed."""
        self._delivery.attach(link)

    def detach(self, link: AgentLink) -> bool:
        """Forget a stream; True if it was the node's current one."""
        return self._delivery.detach(link)

    def disconnect(self, node_id: str, reason: str) -> None:
        """Close a node's stream, if it has one (e.g. its certificate was revoked)."""
        self._delivery.disconnect(node_id, reason)

    def connected(self, node_id: str) -> bool:
        return self._delivery.connected(node_id)

    def redeliver(self, node_id: str) -> int:
        """Send a connecting agent every unacknowledged, unexpired command stored for it."""
        return self._delivery.redeliver(node_id)

    def on_replica_event(self, event: str, correction_id: str) -> None:
        """Another replica stored commands (``dispatch``) or acknowledgements (``settle``)."""
        self._delivery.on_replica_event(event, correction_id)

    def resync(self) -> None:
        """Send every agent held here its stored, unsent commands (events may have been missed)."""
        self._delivery.resync()

    # --- requests ------------------------------------------------------------------------

    def audit(self, actor: str, event: str, subject: str, **details: object) -> None:
        """Append to the audit chain; called before the decision takes effect."""
        self._records.audit(actor, event, subject, **details)

    def create(self, request: CreateRequest, caller: Caller | None = None) -> Correction:
        """An unsigned correction: only in open mode (no trust policy)."""
        return self._admission.create(request, caller)

    def create_signed(
        self, data: bytes, signatures: tuple[SignatureRecord, ...], caller: Caller
    ) -> Correction:
        """A correction built and signed by its issuer; these exact bytes are what agents get."""
        return self._admission.create_signed(data, signatures, caller)

    def approve(
        self, correction_id: str, signature: SignatureRecord | None, caller: Caller
    ) -> Correction:
        return self._admission.approve(correction_id, signature, caller)

    def resume(
        self, correction_id: str, reason: str, issuer: str, caller: Caller | None = None
    ) -> Correction:
        """An unsigned resume: only in open mode."""
        return self._admission.resume(correction_id, reason, issuer, caller)

    def get(self, correction_id: str) -> Correction:
        return self._records.get(correction_id)

    # --- acks and deadlines --------------------------------------------------------------

    def on_ack(self, node_id: str, ack: CommandAck) -> None:
        """Record one acknowledgement now (see :meth:`queue_ack` for the batched path)."""
        self._progress.on_acks([(node_id, ack)])

    def on_acks(self, acks: list[tuple[str, CommandAck]]) -> None:
        """Record acknowledgements (and their audit entries) in one transaction, then settle."""
        self._progress.on_acks(acks)

    def queue_ack(self, node_id: str, ack: CommandAck) -> None:
        """Batch acknowledgements arriving together into one transaction (the gateway's path)."""
        self._progress.queue_ack(node_id, ack)

    def check_deadlines(self) -> None:
        """Time out unacknowledged targets and expire corrections; called periodically."""
        self._progress.check_deadlines()

    def recover(self) -> None:
        """After a restart: restart the ack clock of every dispatched target of open corrections."""
        self._progress.recover()

    # --- watching ------------------------------------------------------------------------

    def watch(self, correction_id: str) -> AsyncIterator[Correction]:
        """The correction now, then each change, until it is terminal."""
        return self._records.watchers.watch(correction_id)
