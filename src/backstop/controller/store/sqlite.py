"""The embedded store: SQLite in WAL mode, with numbered schema migrations.

Specs, workloads and GPU samples are stored as their protobuf bytes (see ``store.rows``), so the
bytes an agent receives (and, with signing, the bytes operators sign) are exactly what is kept.
Columns that queries filter on are kept beside them.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from backstop.controller.store import acks as acks_rules
from backstop.controller.store.acks import AckDecision
from backstop.controller.store.base import NodeRecord, PendingCommand
from backstop.controller.store.migrations import MIGRATIONS
from backstop.controller.store.report_batch import plan_reports
from backstop.controller.store.rows import (
    audit_from_row,
    audit_row,
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
from backstop.core.errors import Conflict, NotFound, StoreError
from backstop.core.models import (
    AuditHead,
    CommandAck,
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

_OPEN_STATES = tuple(
    s.value for s in CorrectionState if not s.terminal and s != CorrectionState.PROPOSED
)
_UNSETTLED_STATES = tuple(s.value for s in CorrectionState if not s.terminal)
"""Proposed, approved or dispatched: a correction that can still expire."""
_FORGET_S = 7 * 24 * 3600.0
"""A replica silent for this long is forgotten (its row deleted)."""
_UNACKED = (TargetState.PENDING.value, TargetState.DISPATCHED.value, TargetState.UNREACHABLE.value)


class SqliteStore:
    """:class:`~backstop.controller.store.base.Store` on one SQLite file (or ``:memory:``)."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=5000")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite store at {path}: {exc}") from exc
        self._lock = threading.RLock()
        self._migrate()

    # --- plumbing ---------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"store operation failed: {exc}") from exc

    def _query(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
        with self._lock:
            try:
                return list(self._db.execute(sql, args).fetchall())
            except sqlite3.Error as exc:
                raise StoreError(f"store query failed: {exc}") from exc

    def _migrate(self) -> None:
        with self._tx() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)")
            applied = {row[0] for row in db.execute("SELECT version FROM schema_migrations")}
            for version, script in enumerate(MIGRATIONS, start=1):
                if version in applied:
                    continue
                for statement in script.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute("INSERT INTO schema_migrations (version) VALUES (?)", (version,))

    def schema_version(self) -> int:
        rows = self._query("SELECT MAX(version) FROM schema_migrations")
        return int(rows[0][0] or 0)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- nodes and reports --------------------------------------------------------------

    def upsert_node(self, node: NodeInfo, now_s: float, replica: str = "") -> None:
        info = node_info_bytes(node)
        with self._tx() as db:
            db.execute(
                """INSERT INTO nodes (node_id, info, connected, first_seen_s, last_seen_s, replica)
                   VALUES (?, ?, 1, ?, ?, ?)
                   ON CONFLICT(node_id) DO UPDATE SET info=excluded.info, connected=1,
                       last_seen_s=excluded.last_seen_s, replica=excluded.replica""",
                (node.node_id, info, now_s, now_s, replica),
            )

    def set_connected(self, node_id: str, connected: bool, now_s: float, replica: str = "") -> None:
        with self._tx() as db:
            if connected:
                db.execute(
                    "UPDATE nodes SET connected=1, replica=?, last_seen_s=? WHERE node_id=?",
                    (replica, now_s, node_id),
                )
            else:
                db.execute(
                    """UPDATE nodes SET connected=0, replica='', last_seen_s=?
                       WHERE node_id=? AND (?='' OR replica=?)""",
                    (now_s, node_id, replica, replica),
                )

    def mark_all_disconnected(self) -> None:
        with self._tx() as db:
            db.execute("UPDATE nodes SET connected=0, replica=''")

    def heartbeat(self, replica: str, now_s: float, stale_after_s: float) -> int:
        with self._tx() as db:
            db.execute(
                """INSERT INTO replicas (replica_id, heartbeat_s) VALUES (?, ?)
                   ON CONFLICT(replica_id) DO UPDATE SET heartbeat_s=excluded.heartbeat_s""",
                (replica, now_s),
            )
            released = db.execute(
                """UPDATE nodes SET connected=0, replica=''
                   WHERE connected=1 AND replica <> '' AND replica NOT IN
                       (SELECT replica_id FROM replicas WHERE heartbeat_s >= ?)""",
                (now_s - stale_after_s,),
            ).rowcount
            db.execute("DELETE FROM replicas WHERE heartbeat_s < ?", (now_s - _FORGET_S,))
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

    def record_reports(self, reports: Sequence[Report], now_s: float) -> list[bool | None]:
        """Store reports in one transaction: True stored, False a repeat, None unknown node."""
        if not reports:
            return []
        node_ids = sorted({r.node_id for r in reports})
        with self._tx() as db:
            marks = ",".join("?" * len(node_ids))
            last = dict(
                db.execute(
                    f"SELECT node_id, last_report_seq FROM nodes WHERE node_id IN ({marks})",  # noqa: S608
                    node_ids,
                ).fetchall()
            )
            batch = plan_reports(reports, last)
            if not batch.latest:
                return batch.results
            db.executemany(
                """UPDATE nodes SET last_report_seq=?, last_seen_s=?, dropped_reports=?
                   WHERE node_id=?""",
                batch.node_rows(now_s),
            )
            db.executemany("DELETE FROM workloads WHERE node_id=?", [(n,) for n in batch.latest])
            db.executemany(
                """INSERT INTO workloads (workload_id, node_id, model_hash, data, updated_s)
                   VALUES (?, ?, ?, ?, ?)""",
                batch.workload_rows(now_s),
            )
            db.executemany(
                """INSERT INTO gpu_samples (node_id, gpu_uuid, sampled_at_s, data)
                   VALUES (?, ?, ?, ?)""",
                batch.gpu_rows,
            )
        return batch.results

    def last_report_sequence(self, node_id: str) -> int:
        rows = self._query("SELECT last_report_seq FROM nodes WHERE node_id=?", (node_id,))
        return int(rows[0][0]) if rows else 0

    def record_node_heads(
        self, node_id: str, witnessed_audit_head: AuditHead, journal_head: AuditHead
    ) -> None:
        w, j = witnessed_audit_head, journal_head
        with self._tx() as db:
            db.execute(
                """UPDATE nodes SET
                       witnessed_audit_hash = CASE WHEN witnessed_audit_seq < ?
                           THEN ? ELSE witnessed_audit_hash END,
                       witnessed_audit_seq = MAX(witnessed_audit_seq, ?),
                       journal_hash = CASE WHEN journal_seq < ? THEN ? ELSE journal_hash END,
                       journal_seq = MAX(journal_seq, ?)
                   WHERE node_id = ? AND (witnessed_audit_seq < ? OR journal_seq < ?)""",
                (w.seq, w.hash, w.seq, j.seq, j.hash, j.seq, node_id, w.seq, j.seq),
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
        with self._tx() as db:
            return db.execute(
                "DELETE FROM gpu_samples WHERE sampled_at_s < ?", (older_than_s,)
            ).rowcount

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
        with self._tx() as db:
            if db.execute(
                "SELECT 1 FROM corrections WHERE correction_id=?", (spec.correction_id,)
            ).fetchone():
                raise Conflict(f"a correction {spec.correction_id} exists already")
            db.execute(
                """INSERT INTO corrections (correction_id, action, spec, state, message,
                       created_at_s, updated_at_s, expires_at_s, reverts, signatures,
                       approvals_required)
                   VALUES (?, ?, ?, ?, '', ?, ?, ?, ?, ?, ?)""",
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
                ),
            )

    def add_signature(self, correction_id: str, signature: SignatureRecord) -> None:
        with self._tx() as db:
            row = db.execute(
                "SELECT signatures FROM corrections WHERE correction_id=?", (correction_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no correction {correction_id!r}")
            found = (*signatures_from_json(row[0]), signature)
            db.execute(
                "UPDATE corrections SET signatures=? WHERE correction_id=?",
                (signatures_to_json(found), correction_id),
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
        ids = [r[0] for r in rows]
        marks = ",".join("?" * len(ids))
        targets: dict[str, list[TargetResult]] = {}
        for cid, *target in self._query(
            f"""SELECT correction_id, node_id, state, sequence, message, outcomes, updated_at_s
                FROM targets WHERE correction_id IN ({marks}) ORDER BY node_id""",  # noqa: S608
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

    def list_open_corrections(self) -> list[Correction]:
        marks = ",".join("?" * len(_OPEN_STATES))
        return self._load_corrections(
            f"WHERE state IN ({marks}) ORDER BY created_at_s", _OPEN_STATES
        )

    def expired_open_corrections(self, now_s: float) -> list[str]:
        marks = ",".join("?" * len(_UNSETTLED_STATES))
        rows = self._query(
            f"""SELECT correction_id FROM corrections
                WHERE state IN ({marks}) AND expires_at_s <= ? ORDER BY expires_at_s""",  # noqa: S608
            (*_UNSETTLED_STATES, now_s),
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
        with self._tx() as db:
            cur = db.execute(
                """UPDATE corrections SET state=?, message=?, updated_at_s=?,
                       completed_at_s=CASE WHEN ? THEN COALESCE(completed_at_s, ?)
                                           ELSE completed_at_s END
                   WHERE correction_id=?""",
                (state.value, message, now_s, int(completed), now_s, correction_id),
            )
            if cur.rowcount == 0:
                raise NotFound(f"no correction {correction_id!r}")

    def add_target(self, correction_id: str, node_id: str, state: TargetState, now_s: float) -> int:
        with self._tx() as db:
            db.execute(
                "INSERT INTO agent_sequences (node_id, last_sequence) VALUES (?, 0) "
                "ON CONFLICT(node_id) DO NOTHING",
                (node_id,),
            )
            db.execute(
                "UPDATE agent_sequences SET last_sequence = last_sequence + 1 WHERE node_id=?",
                (node_id,),
            )
            (sequence,) = db.execute(
                "SELECT last_sequence FROM agent_sequences WHERE node_id=?", (node_id,)
            ).fetchone()
            db.execute(
                """INSERT INTO targets (correction_id, node_id, state, sequence, message,
                       outcomes, updated_at_s) VALUES (?, ?, ?, ?, '', '[]', ?)""",
                (correction_id, node_id, state.value, sequence, now_s),
            )
            return int(sequence)

    def add_targets(
        self,
        correction_id: str,
        targets: Sequence[tuple[str, TargetState, str]],
        now_s: float,
    ) -> dict[str, int]:
        """Record many targets in one transaction; returns each node's command sequence."""
        sequences: dict[str, int] = {}
        with self._tx() as db:
            for node_id, _, _ in targets:
                db.execute(
                    "INSERT INTO agent_sequences (node_id, last_sequence) VALUES (?, 1) "
                    "ON CONFLICT(node_id) DO UPDATE SET last_sequence = last_sequence + 1",
                    (node_id,),
                )
                (seq,) = db.execute(
                    "SELECT last_sequence FROM agent_sequences WHERE node_id=?", (node_id,)
                ).fetchone()
                sequences[node_id] = int(seq)
            db.executemany(
                """INSERT INTO targets (correction_id, node_id, state, sequence, message,
                       outcomes, updated_at_s) VALUES (?, ?, ?, ?, ?, '[]', ?)""",
                [(correction_id, n, s.value, sequences[n], m, now_s) for n, s, m in targets],
            )
        return sequences

    def get_target(self, correction_id: str, node_id: str) -> TargetResult | None:
        rows = self._query(
            "SELECT state, sequence, message, outcomes, updated_at_s FROM targets "
            "WHERE correction_id=? AND node_id=?",
            (correction_id, node_id),
        )
        if not rows:
            return None
        return target_from_row((node_id, *rows[0]))

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
        with self._tx() as db:
            row = db.execute(
                "SELECT sequence, state FROM targets WHERE correction_id=? AND node_id=?",
                (correction_id, node_id),
            ).fetchone()
            if row is None or (only_if is not None and row[1] != only_if.value):
                return None
            db.execute(
                """UPDATE targets SET state=?, message=?, outcomes=?, updated_at_s=?
                   WHERE correction_id=? AND node_id=?""",
                (state.value, message, outcomes_to_json(outcomes), now_s, correction_id, node_id),
            )
        return TargetResult(node_id, state, int(row[0]), message, tuple(outcomes), now_s)

    def pending_commands(
        self, node_id: str, after_sequence: int, now_s: float
    ) -> list[PendingCommand]:
        marks = ",".join("?" * len(_UNACKED))
        rows = self._query(
            f"""SELECT t.node_id, t.sequence, c.spec, c.signatures FROM targets t
                JOIN corrections c ON c.correction_id = t.correction_id
                WHERE t.node_id=? AND t.sequence > ? AND t.state IN ({marks})
                  AND c.expires_at_s > ? ORDER BY t.sequence""",  # noqa: S608
            (node_id, after_sequence, *_UNACKED, now_s),
        )
        return pending_from_rows(rows)

    def pending_for_correction(self, correction_id: str, now_s: float) -> list[PendingCommand]:
        marks = ",".join("?" * len(_UNACKED))
        rows = self._query(
            f"""SELECT t.node_id, t.sequence, c.spec, c.signatures FROM targets t
                JOIN corrections c ON c.correction_id = t.correction_id
                WHERE t.correction_id=? AND t.state IN ({marks}) AND c.expires_at_s > ?
                ORDER BY t.node_id""",  # noqa: S608
            (correction_id, *_UNACKED, now_s),
        )
        return pending_from_rows(rows)

    def record_acks(
        self, acks: Sequence[tuple[str, CommandAck]], now_s: float
    ) -> list[tuple[str, CommandAck]]:
        """Apply (node, ack) pairs and their audit entries in one transaction.

        Acks for targets that do not exist, that repeat what is already recorded (re-sent
        after a reconnect) or that would change a final outcome (audited as ``ack.ignored``)
        change nothing and are left out of the returned list (see ``store.acks``).
        """
        applied: list[tuple[str, CommandAck]] = []
        with self._tx() as db:
            prev = self._audit_head(db)
            for node_id, ack in acks:
                row = db.execute(
                    "SELECT state, message FROM targets WHERE correction_id=? AND node_id=?",
                    (ack.correction_id, node_id),
                ).fetchone()
                recorded = (str(row[0]), str(row[1])) if row else None
                decision = acks_rules.decide(recorded, ack)
                if decision in (AckDecision.UNKNOWN, AckDecision.REPEAT) or recorded is None:
                    continue
                prev = self._insert_audit(
                    db,
                    acks_rules.audit_entry(
                        prev, decision, node_id, ack, recorded_state=recorded[0], now_s=now_s
                    ),
                )
                if decision is AckDecision.IGNORE:
                    continue
                db.execute(
                    """UPDATE targets SET state=?, message=?, outcomes=?, updated_at_s=?
                       WHERE correction_id=? AND node_id=?""",
                    (
                        ack.state.value,
                        ack.message,
                        outcomes_to_json(ack.outcomes),
                        now_s,
                        ack.correction_id,
                        node_id,
                    ),
                )
                applied.append((node_id, ack))
        return applied

    @staticmethod
    def _audit_head(db: sqlite3.Connection) -> AuditEntry | None:
        row = db.execute(
            "SELECT seq, ts, actor, action, subject, details, prev_hash, hash "
            "FROM audit ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return audit_from_row(row) if row else None

    @staticmethod
    def _insert_audit(db: sqlite3.Connection, entry: AuditEntry) -> AuditEntry:
        db.execute(
            "INSERT INTO audit (seq, ts, actor, action, subject, details, prev_hash, hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            audit_row(entry),
        )
        return entry

    # --- audit chain ---------------------------------------------------------------------

    def append_audit(
        self, *, ts: float, actor: str, action: str, subject: str, details: dict[str, Any]
    ) -> AuditEntry:
        with self._tx() as db:
            entry = next_entry(
                self._audit_head(db),
                ts=ts,
                actor=actor,
                action=action,
                subject=subject,
                details=details,
            )
            return self._insert_audit(db, entry)

    def list_audit(self, after_seq: int = 0, limit: int = 0) -> list[AuditEntry]:
        rows = self._query(
            "SELECT seq, ts, actor, action, subject, details, prev_hash, hash FROM audit "
            "WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit if limit > 0 else -1),
        )
        return [audit_from_row(r) for r in rows]

    def audit_head(self) -> AuditHead:
        rows = self._query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        return AuditHead(int(rows[0][0]), str(rows[0][1])) if rows else AuditHead()

    # --- enrolment and certificates ------------------------------------------------------

    def add_enrolment_token(
        self, token_hash: str, node_id: str, now_s: float, expires_at_s: float
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO enrolment_tokens (token_hash, node_id, created_at_s, expires_at_s) "
                "VALUES (?, ?, ?, ?)",
                (token_hash, node_id, now_s, expires_at_s),
            )

    def use_enrolment_token(self, token_hash: str, node_id: str, now_s: float) -> bool:
        """Spend a token: True once for an unexpired token issued for this node."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE enrolment_tokens SET used_at_s=? WHERE token_hash=? AND node_id=? "
                "AND used_at_s IS NULL AND expires_at_s > ?",
                (now_s, token_hash, node_id, now_s),
            )
            return cur.rowcount == 1

    def record_certificate(
        self, serial: str, node_id: str, issued_at_s: float, not_after_s: float
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO certificates (serial, node_id, issued_at_s, not_after_s) "
                "VALUES (?, ?, ?, ?)",
                (serial, node_id, issued_at_s, not_after_s),
            )

    def certificate_issued_at(self, serial: str) -> float | None:
        rows = self._query("SELECT issued_at_s FROM certificates WHERE serial=?", (serial,))
        return float(rows[0][0]) if rows else None

    def revoke_node(self, node_id: str, now_s: float, reason: str) -> int:
        """Refuse the node's certificates issued until now; returns how many known ones."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO revocations (node_id, revoked_at_s, reason) VALUES (?, ?, ?) "
                "ON CONFLICT(node_id) DO UPDATE SET revoked_at_s=excluded.revoked_at_s, "
                "reason=excluded.reason",
                (node_id, now_s, reason),
            )
            return db.execute(
                "UPDATE certificates SET revoked_at_s=? WHERE node_id=? AND revoked_at_s IS NULL",
                (now_s, node_id),
            ).rowcount

    def revoked_before(self, node_id: str) -> float | None:
        """Certificates of this node issued at or before the returned time are revoked."""
        rows = self._query("SELECT revoked_at_s FROM revocations WHERE node_id=?", (node_id,))
        return float(rows[0][0]) if rows else None
