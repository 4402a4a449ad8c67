"""The corrections engine: turns a request into commands and drives it to completion.

Lifecycle (design brief §3): ``[proposed →] approved → dispatched → (per target) applied |
failed | refused → completed | failed``, or ``expired`` when its expiry passes with targets
undelivered; later ``reverted`` once a resume of it completes. Targets are the known nodes in
scope. A connected node gets the command at once; a disconnected one is marked unreachable and
gets it whenever it connects, until the correction expires. A dispatched target without an
acknowledgement after ``ack_timeout_s`` becomes unreachable too. Unreachable is not final: a
late ack still counts. Applied, failed and refused are: no later ack changes them.

The engine wires its collaborators, layered without cycles: ``admission`` (create, approve,
resume) over ``delivery`` (agent links, dispatch, redelivery, replica events) over ``progress``
(acks, deadlines, settling) over ``records`` (store, audit, watchers). It is the face its
callers (gateway, control API, server) see for requests, agent links, deadlines and recovery;
what a single caller needs beyond that it calls on the collaborator that does it: audit appends
on :attr:`~CorrectionsEngine.records`; replica events, resyncs and closing a node's stream on
:attr:`~CorrectionsEngine.delivery`; batched acks on :attr:`~CorrectionsEngine.progress`.
Everything runs on the controller's event loop; the store calls are short transactions.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

from backstop.controller.authz import Authorizer, Caller
from backstop.controller.corrections.admission import Admission, CreateRequest
from backstop.controller.corrections.delivery import AgentLink, Delivery
from backstop.controller.corrections.policy_starts import PolicyStarts
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
        self.records = Records(store, clock)
        tracking = Progress(store)
        self.progress = Settler(self.records, tracking, settings, shared)
        self.delivery = Delivery(self.records, tracking, self.progress, shared, replica_id)
        self._admission = Admission(self.records, settings, self.authz, self.delivery)
        self.resume = self._admission.resume
        """An unsigned resume: only in open mode (the admission's, unchanged)."""
        self.policy_starts = PolicyStarts(self.records, self.authz, self.delivery)
        """Where policies start corrections (and people release the held ones)."""

    # --- agents and replicas -------------------------------------------------------------

    def attach(self, link: AgentLink) -> None:
        """Register a connected agent; an older stream of the same node is closed."""
        self.delivery.attach(link)

    def detach(self, link: AgentLink) -> bool:
        """Forget a stream; True if it was the node's current one."""
        return self.delivery.detach(link)

    def connected(self, node_id: str) -> bool:
        return self.delivery.connected(node_id)

    def redeliver(self, node_id: str) -> int:
        """Send a connecting agent every unacknowledged, unexpired command stored for it."""
        return self.delivery.redeliver(node_id)

    # --- requests ------------------------------------------------------------------------

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
        correction = self.records.get(correction_id)
        if correction.spec.policy_digest:  # held by its policy's limit: a person releases it
            return self.policy_starts.release(correction, signature, caller)
        return self._admission.approve(correction_id, signature, caller)

    def get(self, correction_id: str) -> Correction:
        return self.records.get(correction_id)

    # --- acks and deadlines --------------------------------------------------------------

    def on_ack(self, node_id: str, ack: CommandAck) -> None:
        """Record one acknowledgement now (see :meth:`queue_ack` for the batched path)."""
        self.progress.on_acks([(node_id, ack)])

    def check_deadlines(self) -> None:
        """Time out unacknowledged targets and expire corrections; called periodically."""
        self.progress.check_deadlines()

    def recover(self) -> None:
        """After a restart: restart the ack clock of every dispatched target of open corrections."""
        self.progress.recover()

    # --- watching ------------------------------------------------------------------------

    def watch(self, correction_id: str) -> AsyncIterator[Correction]:
        """The correction now, then each change, until it is terminal."""
        return self.records.watchers.watch(correction_id)
