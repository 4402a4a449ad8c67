"""What both SQL backends do alike: every store method whose SQL reads the same on both.

:class:`SqlStore` holds the queries and single-transaction writes that read and behave the same
on SQLite and PostgreSQL; a backend subclasses it, supplies connections, transactions, the two
locked steps the shared methods build on (a locked read-then-write, an append to the audit
chain) and the methods that differ in how concurrent writers are kept apart, and names its
:class:`~backstop.controller.store.dialect.Dialect`. Queries here use ``?`` placeholders.
Enrolment tokens, certificates and revocations come from its base
:class:`~backstop.controller.store.sql_enrolment.SqlEnrolment`, model history from
:class:`~backstop.controller.store.sql_models.SqlModels`, policy versions from
:class:`~backstop.controller.store.sql_policies.SqlPolicies`, alerts and their delivery
queue from :class:`~backstop.controller.store.sql_alerts.SqlAlerts`, incidents from
:class:`~backstop.controller.store.sql_incidents.SqlIncidents`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from backstop.controller.store.base import NodeRecord, PendingCommand
from backstop.controller.store.dialect import Dialect
from backstop.controller.store.rows import (
    AUDIT_COLUMNS,
    audit_from_row,
    correction_from_row,
    node_info_bytes,
    node_record,
    outcomes_to_json,
    pending_from_rows,
    signatures_from_json,
    signatures_to_json,
    spec_to_bytes,
    target_from_row,
    workload_from_bytes,
)
from backstop.controller.store.sql_alerts import SqlAlerts
from backstop.controller.store.sql_enrolment import SqlEnrolment
from backstop.controller.store.sql_incidents import SqlIncidents
from backstop.controller.store.sql_models import SqlModels
from backstop.controller.store.sql_policies import SqlPolicies
from backstop.core.errors import Conflict, NotFound
from backstop.core.models import (
    AuditHead,
    Correction,
    CorrectionSpec,
    CorrectionState,
    NodeInfo,
    Report,
    SignatureRecord,
    TargetResult,
    TargetState,
    Workload,
    WorkloadOutcome,
)
from backstop.security.audit import AuditEntry, next_entry

OPEN_STATES = tuple(
    s.value for s in CorrectionState if not s.terminal and s != CorrectionState.PROPOSED
)
UNSETTLED_STATES = tuple(s.value for s in CorrectionState if not s.terminal)
"""Proposed, approved or dispatched: a correction that can still expire."""
FORGET_S = 7 * 24 * 3600.0
"""A replica silent for this long is forgotten (its row deleted)."""
UNACKED = (TargetState.PENDING.value, TargetState.DISPATCHED.value, TargetState.UNREACHABLE.value)

AUDIT_HEAD = f"SELECT {AUDIT_COLUMNS} FROM audit ORDER BY seq DESC LIMIT 1"  # noqa: S608
"""The chain's newest entry, which a backend reads under its lock before appending."""
AUDIT_INSERT = f"INSERT INTO audit ({AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
"""One entry, as :func:`~backstop.controller.store.rows.audit_row` gives it."""

Statement = tuple[str, Sequence[object]]
Rewrite = Callable[[list[Any]], Sequence[Statement]]
"""What a locked read-then-write makes of the rows read: the statements to run."""


class SqlStore(SqlEnrolment, SqlModels, SqlPolicies, SqlAlerts, SqlIncidents):
    """The shared half of :class:`~backstop.controller.store.base.Store` over SQL."""

    dialect: Dialect

    @abstractmethod
    def _rewrite(self, query: str, args: Sequence[object], rewrite: Rewrite) -> None:
        """In one transaction: lock and read the rows ``query`` selects, then run the
        statements ``rewrite`` makes of them (raising in ``rewrite`` changes nothing)."""

    @abstractmethod
    def _chain(self, make: Callable[[AuditEntry | None], AuditEntry]) -> AuditEntry:
        """Append the entry ``make`` builds on the chain's newest one, holding the chain
        meanwhile so that no other writer appends in between (the chain never forks)."""

    @abstractmethod
    def record_reports(self, reports: Sequence[Report], now_s: float) -> list[bool | None]:
        """Store reports in one transaction: True stored, False a repeat, None unknown node."""

    def schema_version(self) -> int:
        """The newest migration applied to this database."""
        rows = self._query("SELECT MAX(version) FROM schema_migrations")
        return int(rows[0][0] or 0)

    # --- nodes and reports --------------------------------------------------------------

    def upsert_node(self, node: NodeInfo, now_s: float, replica: str = "") -> None:
        self._write(
            (
                """INSERT INTO nodes (node_id, info, connected, first_seen_s, last_seen_s, replica)
                   VALUES (?, ?, TRUE, ?, ?, ?)
                   ON CONFLICT (node_id) DO UPDATE SET info=excluded.info, connected=TRUE,
                       last_seen_s=excluded.last_seen_s, replica=excluded.replica""",
                (node.node_id, node_info_bytes(node), now_s, now_s, replica),
            )
        )

    def mark_all_disconnected(self) -> None:
        self._write(("UPDATE nodes SET connected=FALSE, replica='' WHERE connected", ()))

    def set_connected(self, node_id: str, connected: bool, now_s: float, replica: str = "") -> None:
        if connected:
            self._write(
                (
                    "UPDATE nodes SET connected=TRUE, replica=?, last_seen_s=? WHERE node_id=?",
                    (replica, now_s, node_id),
                )
            )
        else:
            self._write(
                (
                    """UPDATE nodes SET connected=FALSE, replica='', last_seen_s=?
                       WHERE node_id=? AND (?='' OR replica=?)""",
                    (now_s, node_id, replica, replica),
                )
            )

    def heartbeat(self, replica: str, now_s: float, stale_after_s: float) -> int:
        _, released, _ = self._write(
            (
                """INSERT INTO replicas (replica_id, heartbeat_s) VALUES (?, ?)
                   ON CONFLICT (replica_id) DO UPDATE SET heartbeat_s=excluded.heartbeat_s""",
                (replica, now_s),
            ),
            (
                """UPDATE nodes SET connected=FALSE, replica=''
                   WHERE connected AND replica <> '' AND replica NOT IN
                       (SELECT replica_id FROM replicas WHERE heartbeat_s >= ?)""",
                (now_s - stale_after_s,),
            ),
            ("DELETE FROM replicas WHERE heartbeat_s < ?", (now_s - FORGET_S,)),
        )
        return int(released)

    def _node_records(self, where: str = "", args: Sequence[object] = ()) -> list[NodeRecord]:
        rows = self._query(
            f"""SELECT n.info, n.connected, n.last_seen_s,
                       (SELECT COUNT(*) FROM workloads w WHERE w.node_id = n.node_id), n.replica,
                       n.witnessed_audit_seq, n.witnessed_audit_hash, n.journal_seq, n.journal_hash
                FROM nodes n {where} ORDER BY n.node_id""",  # noqa: S608 - fixed fragments only
            args,
        )
        return [node_record(row) for row in rows]

    def list_nodes(self) -> list[NodeRecord]:
        return self._node_records()

    def get_node(self, node_id: str) -> NodeRecord | None:
        records = self._node_records("WHERE n.node_id = ?", (node_id,))
        return records[0] if records else None

    def record_report(self, report: Report, now_s: float) -> bool:
        stored = self.record_reports([report], now_s)[0]
        if stored is None:
            raise NotFound(f"report from unknown node {report.node_id!r}")
        return stored

    def last_report_sequence(self, node_id: str) -> int:
        rows = self._query("SELECT last_report_seq FROM nodes WHERE node_id=?", (node_id,))
        return int(rows[0][0]) if rows else 0

    def record_node_heads(
        self, node_id: str, witnessed_audit_head: AuditHead, journal_head: AuditHead
    ) -> None:
        w, j, most = witnessed_audit_head, journal_head, self.dialect.greatest
        self._write(
            (
                f"""UPDATE nodes SET
                       witnessed_audit_hash = CASE WHEN witnessed_audit_seq < ?
                           THEN ? ELSE witnessed_audit_hash END,
                       witnessed_audit_seq = {most}(witnessed_audit_seq, ?),
                       journal_hash = CASE WHEN journal_seq < ? THEN ? ELSE journal_hash END,
                       journal_seq = {most}(journal_seq, ?)
                   WHERE node_id = ? AND (witnessed_audit_seq < ? OR journal_seq < ?)""",  # noqa: S608
                (w.seq, w.hash, w.seq, j.seq, j.hash, j.seq, node_id, w.seq, j.seq),
            )
        )

    def list_workloads(self, node_id: str = "") -> list[Workload]:
        if node_id:
            rows = self._query(
                "SELECT data FROM workloads WHERE node_id=? ORDER BY workload_id", (node_id,)
            )
        else:
            rows = self._query("SELECT data FROM workloads ORDER BY node_id, workload_id")
        return [workload_from_bytes(data) for (data,) in rows]

    def prune_samples(self, older_than_s: float) -> int:
        return self._write(("DELETE FROM gpu_samples WHERE sampled_at_s < ?", (older_than_s,)))[0]

    def count_samples(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM gpu_samples")[0][0])

    # --- corrections ---------------------------------------------------------------------

    def create_correction(
        self,
        spec: CorrectionSpec,
        state: CorrectionState,
        now_s: float,
        *,
        spec_bytes: bytes | None = None,
        signatures: Sequence[SignatureRecord] = (),
        approvals_required: int = 0,
    ) -> None:
        (created,) = self._write(
            (
                """INSERT INTO corrections (correction_id, action, spec, state, message,
                       created_at_s, updated_at_s, expires_at_s, reverts, signatures,
                       approvals_required, incident)
                   VALUES (?, ?, ?, ?, '', ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (correction_id) DO NOTHING""",
                (
                    spec.correction_id,
                    spec.action.value,
                    spec_bytes if spec_bytes is not None else spec_to_bytes(spec),
                    state.value,
                    spec.created_at_s,
                    now_s,
                    spec.expires_at_s,
                    spec.reverts,
                    signatures_to_json(signatures),
                    approvals_required,
                    spec.incident,
                ),
            )
        )
        if created == 0:
            raise Conflict(f"a correction {spec.correction_id} exists already")

    def add_signature(self, correction_id: str, signature: SignatureRecord) -> None:
        def appended(rows: list[Any]) -> list[Statement]:
            if not rows:
                raise NotFound(f"no correction {correction_id!r}")
            found = (*signatures_from_json(rows[0][0]), signature)
            return [
                (
                    "UPDATE corrections SET signatures=? WHERE correction_id=?",
                    (signatures_to_json(found), correction_id),
                )
            ]

        self._rewrite(
            "SELECT signatures FROM corrections WHERE correction_id=?", (correction_id,), appended
        )

    def spec_bytes(self, correction_id: str) -> bytes:
        rows = self._query("SELECT spec FROM corrections WHERE correction_id=?", (correction_id,))
        if not rows:
            raise NotFound(f"no correction {correction_id!r}")
        return bytes(rows[0][0])

    def _load_corrections(self, where: str, args: Sequence[object]) -> list[Correction]:
        rows = self._query(
            f"""SELECT correction_id, spec, state, message, updated_at_s, completed_at_s,
                       signatures, approvals_required
                FROM corrections {where}""",  # noqa: S608 - fixed fragments only
            args,
        )
        if not rows:
            return []
        among, ids = self.dialect.in_list("correction_id", [r[0] for r in rows])
        targets: dict[str, list[TargetResult]] = {}
        for cid, *target in self._query(
            f"""SELECT correction_id, node_id, state, sequence, message, outcomes, updated_at_s
                FROM targets WHERE {among} ORDER BY node_id""",  # noqa: S608
            ids,
        ):
            targets.setdefault(str(cid), []).append(target_from_row(target))
        return [correction_from_row(row, targets.get(str(cid), ())) for cid, *row in rows]

    def get_correction(self, correction_id: str) -> Correction | None:
        found = self._load_corrections("WHERE correction_id = ?", (correction_id,))
        return found[0] if found else None

    def list_corrections(self, limit: int = 100) -> list[Correction]:
        return self._load_corrections(
            "ORDER BY created_at_s DESC, correction_id DESC LIMIT ?", (limit,)
        )

    def correction_backlog(self) -> tuple[int, int]:
        """(corrections waiting for approvals, targets of open corrections still unreachable)."""
        among, states = self.dialect.in_list("c.state", OPEN_STATES)
        proposed = self._query(
            "SELECT COUNT(*) FROM corrections WHERE state = ?", (CorrectionState.PROPOSED.value,)
        )
        unreachable = self._query(
            f"""SELECT COUNT(*) FROM targets t JOIN corrections c USING (correction_id)
                WHERE t.state = ? AND {among}""",  # noqa: S608 - placeholders only
            (TargetState.UNREACHABLE.value, *states),
        )
        return int(proposed[0][0]), int(unreachable[0][0])

    def list_open_corrections(self) -> list[Correction]:
        among, states = self.dialect.in_list("state", OPEN_STATES)
        return self._load_corrections(f"WHERE {among} ORDER BY created_at_s", states)

    def expired_open_corrections(self, now_s: float) -> list[str]:
        among, states = self.dialect.in_list("state", UNSETTLED_STATES)
        rows = self._query(
            f"""SELECT correction_id FROM corrections
                WHERE {among} AND expires_at_s <= ? ORDER BY expires_at_s""",  # noqa: S608
            (*states, now_s),
        )
        return [str(r[0]) for r in rows]

    def set_correction_state(
        self,
        correction_id: str,
        state: CorrectionState,
        message: str,
        now_s: float,
        completed: bool = False,
    ) -> None:
        (changed,) = self._write(
            (
                """UPDATE corrections SET state=?, message=?, updated_at_s=?,
                       completed_at_s=CASE WHEN ? THEN COALESCE(completed_at_s, ?)
                                           ELSE completed_at_s END
                   WHERE correction_id=?""",
                (state.value, message, now_s, completed, now_s, correction_id),
            )
        )
        if changed == 0:
            raise NotFound(f"no correction {correction_id!r}")

    def get_target(self, correction_id: str, node_id: str) -> TargetResult | None:
        rows = self._query(
            "SELECT state, sequence, message, outcomes, updated_at_s FROM targets "
            "WHERE correction_id=? AND node_id=?",
            (correction_id, node_id),
        )
        return target_from_row((node_id, *rows[0])) if rows else None

    def target_states(self, correction_id: str) -> dict[str, TargetState]:
        rows = self._query(
            "SELECT node_id, state FROM targets WHERE correction_id=?", (correction_id,)
        )
        return {str(n): TargetState(s) for n, s in rows}

    def update_target(
        self,
        correction_id: str,
        node_id: str,
        state: TargetState,
        *,
        message: str,
        outcomes: Sequence[WorkloadOutcome],
        now_s: float,
        only_if: TargetState | None = None,
    ) -> TargetResult | None:
        only = only_if.value if only_if else None
        (changed,) = self._write(
            (
                """UPDATE targets SET state=?, message=?, outcomes=?, updated_at_s=?
                   WHERE correction_id=? AND node_id=? AND (CAST(? AS TEXT) IS NULL OR state=?)""",
                (
                    state.value,
                    message,
                    outcomes_to_json(outcomes),
                    now_s,
                    correction_id,
                    node_id,
                    only,
                    only,
                ),
            )
        )
        if changed == 0:
            return None
        # a target's sequence is set when it is added and never changes: read it afterwards
        rows = self._query(
            "SELECT sequence FROM targets WHERE correction_id=? AND node_id=?",
            (correction_id, node_id),
        )
        return TargetResult(node_id, state, int(rows[0][0]), message, tuple(outcomes), now_s)

    def pending_commands(
        self, node_id: str, after_sequence: int, now_s: float
    ) -> list[PendingCommand]:
        among, states = self.dialect.in_list("t.state", UNACKED)
        rows = self._query(
            f"""SELECT t.node_id, t.sequence, c.spec, c.signatures FROM targets t
                JOIN corrections c ON c.correction_id = t.correction_id
                WHERE t.node_id=? AND t.sequence > ? AND {among}
                  AND c.expires_at_s > ? ORDER BY t.sequence""",  # noqa: S608
            (node_id, after_sequence, *states, now_s),
        )
        return pending_from_rows(rows)

    def pending_for_correction(self, correction_id: str, now_s: float) -> list[PendingCommand]:
        among, states = self.dialect.in_list("t.state", UNACKED)
        rows = self._query(
            f"""SELECT t.node_id, t.sequence, c.spec, c.signatures FROM targets t
                JOIN corrections c ON c.correction_id = t.correction_id
                WHERE t.correction_id=? AND {among} AND c.expires_at_s > ?
                ORDER BY t.node_id""",  # noqa: S608
            (correction_id, *states, now_s),
        )
        return pending_from_rows(rows)

    # --- audit chain ---------------------------------------------------------------------

    def append_audit(
        self, *, ts: float, actor: str, action: str, subject: str, details: dict[str, Any]
    ) -> AuditEntry:
        return self._chain(
            lambda head: next_entry(
                head, ts=ts, actor=actor, action=action, subject=subject, details=details
            )
        )

    def list_audit(self, after_seq: int = 0, limit: int = 0) -> list[AuditEntry]:
        rows = self._query(
            f"SELECT {AUDIT_COLUMNS} FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",  # noqa: S608
            (after_seq, limit if limit > 0 else self.dialect.no_limit),
        )
        return [audit_from_row(r) for r in rows]

    def audit_head(self) -> AuditHead:
        rows = self._query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        return AuditHead(int(rows[0][0]), str(rows[0][1])) if rows else AuditHead()
