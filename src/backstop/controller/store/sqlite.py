"""The embedded store: SQLite in WAL mode, with numbered schema migrations.

Specs, workloads and GPU samples are stored as their protobuf bytes (``backstop.wire``), so the
bytes an agent receives (and, with signing, the bytes operators sign) are exactly what is kept.
Columns that queries filter on are kept beside them.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from backstop.api.v1 import types_pb2
from backstop.controller.store.base import NodeRecord, PendingCommand
from backstop.controller.store.migrations import MIGRATIONS
from backstop.core.errors import NotFound, StoreError
from backstop.core.models import (
    Correction,
    CorrectionSpec,
    CorrectionState,
    NodeInfo,
    Report,
    TargetResult,
    TargetState,
    Workload,
    WorkloadOutcome,
)
from backstop.wire import convert

_OPEN_STATES = tuple(
    s.value for s in CorrectionState if not s.terminal and s != CorrectionState.PROPOSED
)
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

    def upsert_node(self, node: NodeInfo, now_s: float) -> None:
        info = convert.node_to_pb(node).SerializeToString(deterministic=True)
        with self._tx() as db:
            db.execute(
                """INSERT INTO nodes (node_id, info, connected, first_seen_s, last_seen_s)
                   VALUES (?, ?, 1, ?, ?)
                   ON CONFLICT(node_id) DO UPDATE SET info=excluded.info, connected=1,
                       last_seen_s=excluded.last_seen_s""",
                (node.node_id, info, now_s, now_s),
            )

    def set_connected(self, node_id: str, connected: bool, now_s: float) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE nodes SET connected=?, last_seen_s=? WHERE node_id=?",
                (int(connected), now_s, node_id),
            )

    def mark_all_disconnected(self) -> None:
        with self._tx() as db:
            db.execute("UPDATE nodes SET connected=0")

    def _node_records(self, where: str = "", args: Sequence[object] = ()) -> list[NodeRecord]:
        rows = self._query(
            f"""SELECT n.info, n.connected, n.last_seen_s,
                       (SELECT COUNT(*) FROM workloads w WHERE w.node_id = n.node_id)
                FROM nodes n {where} ORDER BY n.node_id""",  # noqa: S608 - fixed fragments only
            args,
        )
        records = []
        for info, connected, last_seen, count in rows:
            msg = types_pb2.Node()
            msg.ParseFromString(info)
            records.append(
                NodeRecord(convert.node_from_pb(msg), bool(connected), float(last_seen), int(count))
            )
        return records

    def list_nodes(self) -> list[NodeRecord]:
        return self._node_records()

    def get_node(self, node_id: str) -> NodeRecord | None:
        records = self._node_records("WHERE n.node_id = ?", (node_id,))
        return records[0] if records else None

    def record_report(self, report: Report, now_s: float) -> bool:
        with self._tx() as db:
            row = db.execute(
                "SELECT last_report_seq FROM nodes WHERE node_id=?", (report.node_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"report from unknown node {report.node_id!r}")
            if report.sequence and report.sequence <= row[0]:
                return False
            db.execute(
                """UPDATE nodes SET last_report_seq=?, last_seen_s=?, dropped_reports=?
                   WHERE node_id=?""",
                (report.sequence, now_s, report.dropped_reports, report.node_id),
            )
            db.execute("DELETE FROM workloads WHERE node_id=?", (report.node_id,))
            db.executemany(
                """INSERT INTO workloads (workload_id, node_id, model_hash, data, updated_s)
                   VALUES (?, ?, ?, ?, ?)""",
                [
                    (
                        w.workload_id,
                        report.node_id,
                        w.fingerprint.model_hash,
                        convert.workload_to_pb(w).SerializeToString(deterministic=True),
                        now_s,
                    )
                    for w in report.workloads
                ],
            )
            db.executemany(
                """INSERT INTO gpu_samples (node_id, gpu_uuid, sampled_at_s, data)
                   VALUES (?, ?, ?, ?)""",
                [
                    (
                        report.node_id,
                        g.uuid,
                        report.sampled_at_s,
                        convert.gpu_to_pb(g).SerializeToString(deterministic=True),
                    )
                    for g in report.gpus
                ],
            )
        return True

    def list_workloads(self, node_id: str = "") -> list[Workload]:
        if node_id:
            rows = self._query(
                "SELECT data FROM workloads WHERE node_id=? ORDER BY workload_id", (node_id,)
            )
        else:
            rows = self._query("SELECT data FROM workloads ORDER BY node_id, workload_id")
        result = []
        for (data,) in rows:
            msg = types_pb2.Workload()
            msg.ParseFromString(data)
            result.append(convert.workload_from_pb(msg))
        return result

    def prune_samples(self, older_than_s: float) -> int:
        with self._tx() as db:
            return db.execute(
                "DELETE FROM gpu_samples WHERE sampled_at_s < ?", (older_than_s,)
            ).rowcount

    def count_samples(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM gpu_samples")[0][0])

    # --- corrections ---------------------------------------------------------------------

    def create_correction(self, spec: CorrectionSpec, state: CorrectionState, now_s: float) -> None:
        with self._tx() as db:
            db.execute(
                """INSERT INTO corrections (correction_id, action, spec, state, message,
                       created_at_s, updated_at_s, expires_at_s, reverts)
                   VALUES (?, ?, ?, ?, '', ?, ?, ?, ?)""",
                (
                    spec.correction_id,
                    spec.action.value,
                    convert.spec_bytes(spec),
                    state.value,
                    spec.created_at_s,
                    now_s,
                    spec.expires_at_s,
                    spec.reverts,
                ),
            )

    def _load_corrections(self, where: str, args: Sequence[object]) -> list[Correction]:
        rows = self._query(
            f"""SELECT correction_id, spec, state, message, updated_at_s, completed_at_s
                FROM corrections {where}""",  # noqa: S608 - fixed fragments only
            args,
        )
        if not rows:
            return []
        ids = [r[0] for r in rows]
        marks = ",".join("?" * len(ids))
        targets: dict[str, list[TargetResult]] = {}
        for cid, node_id, state, seq, message, outcomes, updated in self._query(
            f"""SELECT correction_id, node_id, state, sequence, message, outcomes, updated_at_s
                FROM targets WHERE correction_id IN ({marks}) ORDER BY node_id""",  # noqa: S608
            ids,
        ):
            targets.setdefault(str(cid), []).append(
                TargetResult(
                    node_id=str(node_id),
                    state=TargetState(state),
                    sequence=int(seq),
                    message=str(message),
                    outcomes=_outcomes_from_json(str(outcomes)),
                    updated_at_s=float(updated),
                )
            )
        return [
            Correction(
                spec=convert.spec_from_bytes(spec),
                state=CorrectionState(state),
                targets=tuple(targets.get(str(cid), ())),
                message=str(message),
                updated_at_s=float(updated),
                completed_at_s=None if completed is None else float(completed),
            )
            for cid, spec, state, message, updated, completed in rows
        ]

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

    def update_target(
        self,
        correction_id: str,
        node_id: str,
        state: TargetState,
        *,
        message: str,
        outcomes: Sequence[WorkloadOutcome],
        now_s: float,
    ) -> TargetResult | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT sequence FROM targets WHERE correction_id=? AND node_id=?",
                (correction_id, node_id),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                """UPDATE targets SET state=?, message=?, outcomes=?, updated_at_s=?
                   WHERE correction_id=? AND node_id=?""",
                (state.value, message, _outcomes_to_json(outcomes), now_s, correction_id, node_id),
            )
        return TargetResult(node_id, state, int(row[0]), message, tuple(outcomes), now_s)

    def pending_commands(
        self, node_id: str, after_sequence: int, now_s: float
    ) -> list[PendingCommand]:
        marks = ",".join("?" * len(_UNACKED))
        rows = self._query(
            f"""SELECT t.sequence, c.spec FROM targets t
                JOIN corrections c ON c.correction_id = t.correction_id
                WHERE t.node_id=? AND t.sequence > ? AND t.state IN ({marks})
                  AND c.expires_at_s > ? ORDER BY t.sequence""",  # noqa: S608
            (node_id, after_sequence, *_UNACKED, now_s),
        )
        return [
            PendingCommand(node_id, int(seq), convert.spec_from_bytes(spec)) for seq, spec in rows
        ]


def _outcomes_to_json(outcomes: Sequence[WorkloadOutcome]) -> str:
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


def _outcomes_from_json(text: str) -> tuple[WorkloadOutcome, ...]:
    return tuple(
        WorkloadOutcome(d["workload_id"], tuple(d["pids"]), d["outcome"], d.get("detail", ""))
        for d in json.loads(text)
    )
