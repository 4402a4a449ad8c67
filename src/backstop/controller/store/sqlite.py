"""The embedded store: SQLite in WAL mode, with numbered schema migrations.

Specs, workloads and GPU samples are stored as their protobuf bytes (see ``store.rows``), so the
bytes an agent receives (and, with signing, the bytes operators sign) are exactly what is kept.
Columns that queries filter on are kept beside them.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from backstop.controller.store import acks as acks_rules
from backstop.controller.store.acks import AckDecision
from backstop.controller.store.base import NewTarget
from backstop.controller.store.dialect import SQLITE
from backstop.controller.store.migrations import MIGRATIONS
from backstop.controller.store.report_batch import plan_reports
from backstop.controller.store.rows import audit_from_row, audit_row
from backstop.controller.store.sql_models import SIGHTING_UPSERT
from backstop.controller.store.sql_store import (
    AUDIT_HEAD,
    AUDIT_INSERT,
    Rewrite,
    SqlStore,
    Statement,
)
from backstop.core.errors import StoreError
from backstop.core.models import CommandAck, Report, TargetState
from backstop.security.audit import AuditEntry


class SqliteStore(SqlStore):
    """:class:`~backstop.controller.store.base.Store` on one SQLite file (or ``:memory:``)."""

    dialect = SQLITE

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
        self._sighted: dict[tuple[str, str], float] = {}
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

    def _write(self, *statements: Statement) -> list[int]:
        with self._tx() as db:
            return [db.execute(sql, args).rowcount for sql, args in statements]

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

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- nodes and reports --------------------------------------------------------------

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
            db.executemany(SIGHTING_UPSERT, batch.sighting_rows(now_s, self._sighted))
        return batch.results

    # --- corrections ---------------------------------------------------------------------

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
        self, correction_id: str, targets: Sequence[NewTarget], now_s: float
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

    def record_acks(
        self, acks: Sequence[tuple[str, CommandAck]], now_s: float
    ) -> list[tuple[str, CommandAck]]:
        """The transaction holds the database's write lock: acks are compared, then applied."""
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
                db.execute(acks_rules.APPLY_SQL, acks_rules.applied_row(node_id, ack, now_s))
                applied.append((node_id, ack))
        return applied

    def _rewrite(self, query: str, args: Sequence[object], rewrite: Rewrite) -> None:
        with self._tx() as db:  # BEGIN IMMEDIATE: the write lock is held before the read
            for statement, values in rewrite(db.execute(query, args).fetchall()):
                db.execute(statement, values)

    def _chain(self, make: Callable[[AuditEntry | None], AuditEntry]) -> AuditEntry:
        with self._tx() as db:
            return self._insert_audit(db, make(self._audit_head(db)))

    @staticmethod
    def _audit_head(db: sqlite3.Connection) -> AuditEntry | None:
        row = db.execute(AUDIT_HEAD).fetchone()
        return audit_from_row(row) if row else None

    @staticmethod
    def _insert_audit(db: sqlite3.Connection, entry: AuditEntry) -> AuditEntry:
        db.execute(AUDIT_INSERT, audit_row(entry))
        return entry

    # --- audit chain ---------------------------------------------------------------------

    # --- enrolment and certificates ------------------------------------------------------
