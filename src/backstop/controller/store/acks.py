"""What an acknowledgement may change, decided once for every store backend.

A target's outcome is final once it is applied, failed or refused: a later ack for it changes
nothing, whoever sends it (a node's key must not turn a refused target into an applied one).
Such an ack is written to the audit chain as ``ack.ignored``; an exact repeat of what is
recorded (an agent re-sends its recent acks after every reconnect) is simply dropped. Targets
that are pending, dispatched or unreachable take the ack (a late ack still counts).
"""

from __future__ import annotations

import enum

from backstop.controller.store.rows import outcomes_to_json
from backstop.core.models import CommandAck, TargetResult, TargetState
from backstop.security.audit import AuditEntry, next_entry

FINAL = frozenset(s.value for s in TargetState if s.terminal)

APPLY_SQL = """UPDATE targets SET state=?, message=?, outcomes=?, updated_at_s=?
               WHERE correction_id=? AND node_id=?"""
"""What an applied ack writes (``?`` placeholders), with the values of :func:`applied_row`."""


def applied_row(node_id: str, ack: CommandAck, now_s: float) -> tuple[object, ...]:
    """The values :data:`APPLY_SQL` writes for an ack the node's target takes."""
    return (
        ack.state.value,
        ack.message,
        outcomes_to_json(ack.outcomes),
        now_s,
        ack.correction_id,
        node_id,
    )


class AckDecision(enum.Enum):
    APPLY = "apply"
    """The target takes the ack (audited as ``command.ack``)."""
    REPEAT = "repeat"
    """Exactly what is recorded: nothing to do, nothing to audit."""
    IGNORE = "ignore"
    """The target's outcome is final and the ack says otherwise (audited as ``ack.ignored``)."""
    UNKNOWN = "unknown"
    """No such target: the node was never sent this correction."""


def decide(recorded: tuple[str, str] | None, ack: CommandAck) -> AckDecision:
    """The decision for ``ack`` given the target's recorded (state, message), if any."""
    if recorded is None:
        return AckDecision.UNKNOWN
    if recorded == (ack.state.value, ack.message):
        return AckDecision.REPEAT
    if recorded[0] in FINAL:
        return AckDecision.IGNORE
    return AckDecision.APPLY


def audit_entry(
    prev: AuditEntry | None,
    decision: AckDecision,
    node_id: str,
    ack: CommandAck,
    *,
    recorded_state: str,
    now_s: float,
) -> AuditEntry:
    """The audit entry of an applied (``command.ack``) or ignored (``ack.ignored``) ack."""
    details: dict[str, object] = {
        "sequence": ack.sequence,
        "state": ack.state.value,
        "message": ack.message,
        "workloads": [o.workload_id for o in ack.outcomes if o.outcome == "applied"],
    }
    if decision is AckDecision.IGNORE:
        details["recorded"] = recorded_state
        details["reason"] = f"the target is already {recorded_state}; a final outcome stays"
    return next_entry(
        prev,
        ts=now_s,
        actor=node_id,
        action="ack.ignored" if decision is AckDecision.IGNORE else "command.ack",
        subject=ack.correction_id,
        details=details,
    )


def unused_ack(target: TargetResult | None, ack: CommandAck) -> str:
    """Why ``ack`` changed nothing, for the log ('' for a plain repeat)."""
    if target is None:
        return "ack for a correction this node was not sent"
    if target.state.terminal and (target.state, target.message) != (ack.state, ack.message):
        return f"ack ignored: the target is already {target.state.value}, a final outcome"
    return ""
