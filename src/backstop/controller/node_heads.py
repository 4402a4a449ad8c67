"""The heads an agent reports (in its Hello and each Report), kept as witnesses.

``witnessed_audit_head`` is the newest controller audit head the agent received with a command
and journaled; ``journal_head`` is the head of the agent's own journal. The store keeps, per
node, the furthest of each ever reported (``backstop audit verify`` holds the chains to them).
A stream's :class:`NodeHeads` remembers what it last handed to the store, so the ingest path
writes only when a head moved forward, not once per report.
"""

from __future__ import annotations

import logging

from backstop.controller.store.base import NodeRecord, Store
from backstop.core.errors import BackstopError
from backstop.core.models import AuditHead

log = logging.getLogger(__name__)


class NodeHeads:
    def __init__(self, store: Store, node_id: str, known: NodeRecord | None) -> None:
        """``known`` is the node's record as stored before this stream (None: a new node)."""
        self._store = store
        self._node_id = node_id
        self._witnessed = known.witnessed_audit_head if known else AuditHead()
        self._journal = known.journal_head if known else AuditHead()

    def note(self, witnessed: AuditHead, journal: AuditHead) -> None:
        """Store the heads if either is further on than the ones kept."""
        if witnessed.seq <= self._witnessed.seq and journal.seq <= self._journal.seq:
            return
        try:
            self._store.record_node_heads(self._node_id, witnessed, journal)
        except BackstopError as exc:  # the agent reports them again with its next report
            log.warning(
                "could not store a node's heads", extra={"node": self._node_id, "error": exc}
            )
            return
        if witnessed.seq > self._witnessed.seq:
            self._witnessed = witnessed
        if journal.seq > self._journal.seq:
            self._journal = journal
