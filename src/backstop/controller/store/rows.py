"""The store's rows and the core models they hold: the one place the store meets ``backstop.wire``.

Specs, nodes, workloads and GPU samples are kept as their protobuf bytes, so the bytes an agent
receives (and, with signing, the bytes operators sign) are exactly what is kept; signatures,
outcomes and audit details are JSON text. This module passes on wire's protobuf encodings,
owns the JSON ones and turns rows read back (tuples in the column order the store selects) into
core models. Every backend stores the
same bytes and text, so rows written by one read alike in the other.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from backstop.controller.store.base import NodeRecord, PendingCommand
from backstop.core.models import (
    AuditHead,
    Correction,
    CorrectionSpec,
    CorrectionState,
    SignatureRecord,
    TargetResult,
    TargetState,
    WorkloadOutcome,
)
from backstop.security.audit import AuditEntry
from backstop.wire import correction_convert, stored
from backstop.wire.convert import encoded_gpus
from backstop.wire.correction_convert import spec_bytes as spec_to_bytes
from backstop.wire.stored import model_bytes, model_from_bytes, workload_bytes, workload_from_bytes
from backstop.wire.stored import node_bytes as node_info_bytes

# The protobuf encodings are passed on as wire writes them (the bytes are what the store keeps).
__all__ = [
    "AUDIT_COLUMNS",
    "audit_from_row",
    "audit_row",
    "correction_from_row",
    "encoded_gpus",
    "model_bytes",
    "model_from_bytes",
    "node_info_bytes",
    "node_record",
    "outcomes_from_json",
    "outcomes_to_json",
    "pending_from_rows",
    "signatures_from_json",
    "signatures_to_json",
    "spec_to_bytes",
    "target_from_row",
    "workload_bytes",
    "workload_from_bytes",
]

AUDIT_COLUMNS = "seq, ts, actor, action, subject, details, prev_hash, hash"
"""The audit table's columns, in the order :func:`audit_from_row` and :func:`audit_row` use."""


def node_record(row: Sequence[Any]) -> NodeRecord:
    """A NodeRecord from an (info, connected, last seen, workload count, replica, witnessed
    seq, witnessed hash, journal seq, journal hash) row."""
    info, connected, last_seen, count, replica, w_seq, w_hash, j_seq, j_hash = row
    return NodeRecord(
        stored.node_from_bytes(info),
        bool(connected),
        float(last_seen),
        int(count),
        str(replica),
        witnessed_audit_head=AuditHead(int(w_seq), str(w_hash)),
        journal_head=AuditHead(int(j_seq), str(j_hash)),
    )


def target_from_row(row: Sequence[Any]) -> TargetResult:
    """A TargetResult from a (node, state, sequence, message, outcomes, updated) row."""
    node_id, state, seq, message, outcomes, updated = row
    return TargetResult(
        node_id=str(node_id),
        state=TargetState(state),
        sequence=int(seq),
        message=str(message),
        outcomes=outcomes_from_json(str(outcomes)),
        updated_at_s=float(updated),
    )


def correction_from_row(row: Sequence[Any], targets: Sequence[TargetResult]) -> Correction:
    """A Correction from a (spec, state, message, updated, completed, signatures, approvals
    required) row and its targets."""
    spec, state, message, updated, completed, sigs, required = row
    signatures = signatures_from_json(sigs)
    return Correction(
        spec=correction_convert.spec_from_bytes(bytes(spec)),
        state=CorrectionState(state),
        targets=tuple(targets),
        message=str(message),
        updated_at_s=float(updated),
        completed_at_s=None if completed is None else float(completed),
        signatures=signatures,
        approvals_required=int(required),
        approvers=tuple(dict.fromkeys(s.signer for s in signatures if s.role == "approver")),
    )


def pending_from_rows(rows: Sequence[Sequence[Any]]) -> list[PendingCommand]:
    """PendingCommands from (node, sequence, spec, signatures) rows; each spec parsed once."""
    parsed: dict[bytes, tuple[CorrectionSpec, tuple[SignatureRecord, ...]]] = {}
    pending = []
    for node_id, seq, spec, sigs in rows:
        data = bytes(spec)
        known = parsed.get(data)
        if known is None:
            known = parsed[data] = (
                correction_convert.spec_from_bytes(data),
                signatures_from_json(sigs),
            )
        pending.append(PendingCommand(str(node_id), int(seq), known[0], data, known[1]))
    return pending


def signatures_to_json(signatures: Sequence[SignatureRecord]) -> str:
    """Signatures as stored: a JSON list, signature bytes in base64."""
    return json.dumps(
        [
            {
                "key_id": s.key_id,
                "signer": s.signer,
                "role": s.role,
                "signature": base64.b64encode(s.signature).decode(),
                "signed_at_s": s.signed_at_s,
            }
            for s in signatures
        ]
    )


def signatures_from_json(text: str) -> tuple[SignatureRecord, ...]:
    """The signatures :func:`signatures_to_json` stored."""
    return tuple(
        SignatureRecord(
            d["key_id"], d["signer"], d["role"], base64.b64decode(d["signature"]), d["signed_at_s"]
        )
        for d in json.loads(text)
    )


def audit_from_row(row: Sequence[Any]) -> AuditEntry:
    """An AuditEntry from a row of :data:`AUDIT_COLUMNS`."""
    seq, ts, actor, action, subject, details, prev_hash, digest = row
    return AuditEntry(
        seq=int(seq),
        ts=float(ts),
        actor=str(actor),
        action=str(action),
        subject=str(subject),
        details=json.loads(details),
        prev_hash=str(prev_hash),
        hash=str(digest),
    )


def audit_row(entry: AuditEntry) -> tuple[object, ...]:
    """An audit entry as the row of :data:`AUDIT_COLUMNS` that stores it."""
    return (
        entry.seq,
        entry.ts,
        entry.actor,
        entry.action,
        entry.subject,
        json.dumps(entry.details, sort_keys=True),
        entry.prev_hash,
        entry.hash,
    )


def outcomes_to_json(outcomes: Sequence[WorkloadOutcome]) -> str:
    """Workload outcomes as stored: a JSON list."""
    return json.dumps(
        [
            {
                "workload_id": o.workload_id,
                "pids": list(o.pids),
                "outcome": o.outcome,
                "detail": o.detail,
            }
            for o in outcomes
        ]
    )


def outcomes_from_json(text: str) -> tuple[WorkloadOutcome, ...]:
    """The outcomes :func:`outcomes_to_json` stored."""
    return tuple(
        WorkloadOutcome(d["workload_id"], tuple(d["pids"]), d["outcome"], d.get("detail", ""))
        for d in json.loads(text)
    )
