"""The shared store: PostgreSQL through psycopg 3, safe for several controller replicas at once.

Rows hold what the SQLite store holds (protobuf bytes beside the columns queries filter on, the
same JSON text), so both backends behave alike and pass the same store suite. What differs is
how writes from several replicas are kept apart, all within one transaction per method:

- report sequences: the node's row is locked (``SELECT ... FOR NO KEY UPDATE``) before the
  sequence is compared, so a report delivered twice to two replicas is stored once;
- per-node command sequences: ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` bumps the
  counter and keeps its row locked until the target row is written, so numbers are distinct and
  gapless (a failed insert rolls the bump back); ``add_targets`` bumps its nodes' counters in
  node order, so replicas dispatching to overlapping nodes queue instead of deadlocking;
- the audit chain: appends (``append_audit``, and ``record_acks`` with its entries) take a
  transaction-scoped advisory lock, so the head read and the next entries' inserts never
  interleave with another replica's (the chain never forks); ``record_acks`` also locks the
  target rows it compares, so an ack is applied once;
- enrolment tokens: one conditional ``UPDATE``; of two replicas spending the same token, the
  second sees the first one's ``used_at_s`` and gets ``False``;
- migrations: applied under an advisory lock, so replicas starting together apply each once.

:meth:`PostgresStore.notify` and :meth:`PostgresStore.listen` expose LISTEN/NOTIFY, the way a
replica tells the others that something changed (a command for an agent connected elsewhere).

Connections: a small pool (``pool_size``) of autocommit connections opened on demand; every
method borrows one for one transaction. A connection that breaks is dropped, and the failure
surfaces as :class:`~backstop.core.errors.StoreError` (temporary: retry).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import TupleRow

from backstop.controller.store import acks as acks_rules
from backstop.controller.store.acks import AckDecision
from backstop.controller.store.base import NodeRecord, PendingCommand
from backstop.controller.store.postgres_listener import (
    Listener,
    check_channel,
    check_payload,
    open_listener,
)
from backstop.controller.store.postgres_migrations import MIGRATIONS
from backstop.controller.store.postgres_pool import ConnectionPool
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
from backstop.controller.store.sqlite import (
    _FORGET_S,
    _OPEN_STATES,
    _UNACKED,
    _UNSETTLED_STATES,
)
from backstop.core.errors import Conflict, InvalidInput, NotFound, StoreError
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

log = logging.getLogger(__name__)

Cursor = psycopg.Cursor[TupleRow]

LOCK_CLASS = 0x42535450
"""First key of every advisory lock Backstop takes (``b"BSTP"``); the second names the lock."""
MIGRATION_LOCK = 1
AUDIT_LOCK = 2


class PostgresStore:
    """:class:`~backstop.controller.store.base.Store` on a PostgreSQL database, shared by replicas.

    ``dsn`` is a libpq connection string or URL (``postgresql://user@host:5432/db``). Opening
    applies pending migrations. ``pool_size`` bounds the connections this instance holds;
    a call waits up to ``pool_wait_s`` for a free one.
    """

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 4,
        connect_timeout_s: int = 10,
        pool_wait_s: float = 30.0,
    ) -> None:
        if pool_size < 1:
            raise InvalidInput(f"pool_size must be at least 1, got {pool_size}")
        self.dsn = dsn
        self._pool = ConnectionPool(dsn, pool_size, connect_timeout_s, pool_wait_s)
        self._migrate()

    # --- plumbing ---------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[Cursor]:
        """One transaction on a pooled connection; rolled back if the body raises."""
        with self._pool.connection() as conn:
            try:
                with conn.transaction(), conn.cursor() as cur:
                    yield cur
            except psycopg.Error as exc:
                raise StoreError(f"store operation failed: {exc}") from exc

    def _query(self, query: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._pool.connection() as conn:
            try:
                return conn.execute(query, args).fetchall()
            except psycopg.Error as exc:
                raise StoreError(f"store query failed: {exc}") from exc

    def _migrate(self) -> None:
        with self._tx() as cur:
            # The lock comes first: CREATE TABLE IF NOT EXISTS itself races between sessions.
            cur.execute(
                "SELECT pg_advisory_xact_lock(%s::integer, %s::integer)",
                (LOCK_CLASS, MIGRATION_LOCK),
            )
            cur.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version INTEGER PRIMARY KEY,
                       applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
            )
            cur.execute("SELECT version FROM schema_migrations")
            applied = {int(row[0]) for row in cur.fetchall()}
            for version, script in enumerate(MIGRATIONS, start=1):
                if version in applied:
                    continue
                cur.execute(script.encode())  # several statements, no parameters
                cur.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                log.info("applied store migration %d", version, extra={"version": version})

    def schema_version(self) -> int:
        """The newest migration applied to this database."""
        rows = self._query("SELECT MAX(version) FROM schema_migrations")
        return int(rows[0][0] or 0)

    def close(self) -> None:
        """Close this instance's connections (listeners stay open until closed themselves)."""
        self._pool.close()

    # --- LISTEN/NOTIFY ----------------------------------------------------------------------

    def notify(self, channel: str, payload: str = "") -> None:
        """Send ``payload`` to every connection listening on ``channel``, in any replica.

        Delivered once committed (at once: this runs in its own transaction), at most once
        per listener, in order per sender. Listeners that are not connected miss it.
        """
        check_channel(channel)
        check_payload(payload)
        with self._tx() as cur:
            cur.execute("SELECT pg_notify(%s, %s)", (channel, payload))

    def listen(self, *channels: str, wake_s: float = 0.5) -> Listener:
        """A :class:`Listener` on its own connection, already LISTENing on ``channels``."""
        return open_listener(self._pool, channels, wake_s)

    # --- nodes and reports --------------------------------------------------------------

    def upsert_node(self, node: NodeInfo, now_s: float, replica: str = "") -> None:
        info = node_info_bytes(node)
        with self._tx() as cur:
            cur.execute(
                """INSERT INTO nodes (node_id, info, connected, first_seen_s, last_seen_s, replica)
                   VALUES (%s, %s, TRUE, %s, %s, %s)
                   ON CONFLICT (node_id) DO UPDATE SET info=excluded.info, connected=TRUE,
                       last_seen_s=excluded.last_seen_s, replica=excluded.replica""",
                (node.node_id, info, now_s, now_s, replica),
            )

    def set_connected(self, node_id: str, connected: bool, now_s: float, replica: str = "") -> None:
        with self._tx() as cur:
            if connected:
                cur.execute(
                    "UPDATE nodes SET connected=TRUE, replica=%s, last_seen_s=%s WHERE node_id=%s",
                    (replica, now_s, node_id),
                )
            else:
                cur.execute(
                    """UPDATE nodes SET connected=FALSE, replica='', last_seen_s=%s
                       WHERE node_id=%s AND (%s='' OR replica=%s)""",
                    (now_s, node_id, replica, replica),
                )

    def mark_all_disconnected(self) -> None:
        with self._tx() as cur:
            cur.execute("UPDATE nodes SET connected=FALSE, replica='' WHERE connected")

    def heartbeat(self, replica: str, now_s: float, stale_after_s: float) -> int:
        with self._tx() as cur:
            cur.execute(
                """INSERT INTO replicas (replica_id, heartbeat_s) VALUES (%s, %s)
                   ON CONFLICT (replica_id) DO UPDATE SET heartbeat_s=excluded.heartbeat_s""",
                (replica, now_s),
            )
            cur.execute(
                """UPDATE nodes SET connected=FALSE, replica=''
                   WHERE connected AND replica <> '' AND replica NOT IN
                       (SELECT replica_id FROM replicas WHERE heartbeat_s >= %s)""",
                (now_s - stale_after_s,),
            )
            released = cur.rowcount
            cur.execute("DELETE FROM replicas WHERE heartbeat_s < %s", (now_s - _FORGET_S,))
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
        records = self._node_records("WHERE n.node_id = %s", (node_id,))
        return records[0] if records else None

    def record_report(self, report: Report, now_s: float) -> bool:
        stored = self.record_reports([report], now_s)[0]
        if stored is None:
            raise NotFound(f"report from unknown node {report.node_id!r}")
        return stored

    def record_reports(self, reports: Sequence[Report], now_s: float) -> list[bool | None]:
        """Store reports in one transaction: True stored, False a repeat, None unknown node.

        A few statements per batch, whatever its size: the nodes' rows are locked (in node
        order, so replicas storing overlapping batches queue instead of deadlocking) before
        their sequences are compared, so a report delivered to two replicas is stored once.
        """
        if not reports:
            return []
        node_ids = sorted({r.node_id for r in reports})
        with self._tx() as cur:
            cur.execute(
                """SELECT node_id, last_report_seq FROM nodes WHERE node_id = ANY(%s)
                   ORDER BY node_id FOR NO KEY UPDATE""",
                (node_ids,),
            )
            batch = plan_reports(reports, {str(n): int(q) for n, q in cur.fetchall()})
            if not batch.latest:
                return batch.results
            cur.execute(
                """UPDATE nodes n SET last_report_seq=u.seq, last_seen_s=u.seen,
                       dropped_reports=u.dropped
                   FROM unnest(%s::bigint[], %s::float8[], %s::bigint[], %s::text[])
                       AS u(seq, seen, dropped, node_id)
                   WHERE n.node_id = u.node_id""",
                _columns(batch.node_rows(now_s), 4),
            )
            cur.execute("DELETE FROM workloads WHERE node_id = ANY(%s)", (list(batch.latest),))
            workloads = batch.workload_rows(now_s)
            if workloads:
                cur.execute(
                    """INSERT INTO workloads (workload_id, node_id, model_hash, data, updated_s)
                       SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bytea[],
                           %s::float8[])""",
                    _columns(workloads, 5),
                )
            if batch.gpu_rows:  # the bulk of a batch: binary COPY, rows formatted in C
                with cur.copy(
                    """COPY gpu_samples (node_id, gpu_uuid, sampled_at_s, data)
                       FROM STDIN (FORMAT BINARY)"""
                ) as copy:
                    copy.set_types(["text", "text", "float8", "bytea"])
                    for row in batch.gpu_rows:
                        copy.write_row(row)
        return batch.results

    def last_report_sequence(self, node_id: str) -> int:
        rows = self._query("SELECT last_report_seq FROM nodes WHERE node_id=%s", (node_id,))
        return int(rows[0][0]) if rows else 0

    def record_node_heads(
        self, node_id: str, witnessed_audit_head: AuditHead, journal_head: AuditHead
    ) -> None:
        w, j = witnessed_audit_head, journal_head
        with self._tx() as cur:
            cur.execute(
                """UPDATE nodes SET
                       witnessed_audit_hash = CASE WHEN witnessed_audit_seq < %s
                           THEN %s ELSE witnessed_audit_hash END,
                       witnessed_audit_seq = GREATEST(witnessed_audit_seq, %s),
                       journal_hash = CASE WHEN journal_seq < %s THEN %s ELSE journal_hash END,
                       journal_seq = GREATEST(journal_seq, %s)
                   WHERE node_id = %s AND (witnessed_audit_seq < %s OR journal_seq < %s)""",
                (w.seq, w.hash, w.seq, j.seq, j.hash, j.seq, node_id, w.seq, j.seq),
            )

    def list_workloads(self, node_id: str = "") -> list[Workload]:
        if node_id:
            rows = self._query(
                "SELECT data FROM workloads WHERE node_id=%s ORDER BY workload_id", (node_id,)
            )
        else:
            rows = self._query("SELECT data FROM workloads ORDER BY node_id, workload_id")
        return [workload_from_bytes(data) for (data,) in rows]

    def prune_samples(self, older_than_s: float) -> int:
        with self._tx() as cur:
            cur.execute("DELETE FROM gpu_samples WHERE sampled_at_s < %s", (older_than_s,))
            return cur.rowcount

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
        with self._tx() as cur:
            cur.execute(
                """INSERT INTO corrections (correction_id, action, spec, state, message,
                       created_at_s, updated_at_s, expires_at_s, reverts, signatures,
                       approvals_required)
                   VALUES (%s, %s, %s, %s, '', %s, %s, %s, %s, %s, %s)
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
                ),
            )
            if cur.rowcount == 0:
                raise Conflict(f"a correction {spec.correction_id} exists already")

    def add_signature(self, correction_id: str, signature: SignatureRecord) -> None:
        with self._tx() as cur:
            cur.execute(
                "SELECT signatures FROM corrections WHERE correction_id=%s FOR NO KEY UPDATE",
                (correction_id,),
            )
            row = cur.fetchone()
            if row is None:
                raise NotFound(f"no correction {correction_id!r}")
            found = (*signatures_from_json(row[0]), signature)
            cur.execute(
                "UPDATE corrections SET signatures=%s WHERE correction_id=%s",
                (signatures_to_json(found), correction_id),
            )

    def spec_bytes(self, correction_id: str) -> bytes:
        rows = self._query("SELECT spec FROM corrections WHERE correction_id=%s", (correction_id,))
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
        targets: dict[str, list[TargetResult]] = {}
        for cid, *target in self._query(
            """SELECT correction_id, node_id, state, sequence, message, outcomes, updated_at_s
               FROM targets WHERE correction_id = ANY(%s) ORDER BY node_id""",
            ([r[0] for r in rows],),
        ):
            targets.setdefault(str(cid), []).append(target_from_row(target))
        return [correction_from_row(row, targets.get(str(cid), ())) for cid, *row in rows]

    def get_correction(self, correction_id: str) -> Correction | None:
        found = self._load_corrections("WHERE correction_id = %s", (correction_id,))
        return found[0] if found else None

    def list_corrections(self, limit: int = 100) -> list[Correction]:
        return self._load_corrections(
            "ORDER BY created_at_s DESC, correction_id DESC LIMIT %s", (limit,)
        )

    def list_open_corrections(self) -> list[Correction]:
        return self._load_corrections(
            "WHERE state = ANY(%s) ORDER BY created_at_s", (list(_OPEN_STATES),)
        )

    def expired_open_corrections(self, now_s: float) -> list[str]:
        rows = self._query(
            """SELECT correction_id FROM corrections
               WHERE state = ANY(%s) AND expires_at_s <= %s ORDER BY expires_at_s""",
            (list(_UNSETTLED_STATES), now_s),
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
        with self._tx() as cur:
            cur.execute(
                """UPDATE corrections SET state=%s, message=%s, updated_at_s=%s,
                       completed_at_s=CASE WHEN %s THEN COALESCE(completed_at_s, %s)
                                           ELSE completed_at_s END
                   WHERE correction_id=%s""",
                (state.value, message, now_s, completed, now_s, correction_id),
            )
            if cur.rowcount == 0:
                raise NotFound(f"no correction {correction_id!r}")

    def add_target(self, correction_id: str, node_id: str, state: TargetState, now_s: float) -> int:
        with self._tx() as cur:
            # The upsert locks the counter row until commit: other replicas wait here, then
            # see this bump. If the target insert fails, the bump rolls back with it (no gap).
            cur.execute(
                """INSERT INTO agent_sequences AS a (node_id, last_sequence) VALUES (%s, 1)
                   ON CONFLICT (node_id) DO UPDATE SET last_sequence = a.last_sequence + 1
                   RETURNING last_sequence""",
                (node_id,),
            )
            row = cur.fetchone()
            if row is None:  # pragma: no cover - an upsert with RETURNING always returns a row
                raise StoreError(f"no command sequence assigned for node {node_id!r}")
            sequence = int(row[0])
            cur.execute(
                """INSERT INTO targets (correction_id, node_id, state, sequence, message,
                       outcomes, updated_at_s) VALUES (%s, %s, %s, %s, '', '[]', %s)""",
                (correction_id, node_id, state.value, sequence, now_s),
            )
            return sequence

    def add_targets(
        self,
        correction_id: str,
        targets: Sequence[tuple[str, TargetState, str]],
        now_s: float,
    ) -> dict[str, int]:
        """Record many targets in one transaction; returns each node's command sequence."""
        if not targets:
            return {}
        with self._tx() as cur:
            # Counter rows are locked in node order, so two replicas dispatching to
            # overlapping sets of nodes queue behind each other instead of deadlocking.
            cur.execute(
                """INSERT INTO agent_sequences AS a (node_id, last_sequence)
                   SELECT n, 1 FROM unnest(%s::text[]) AS n ORDER BY n
                   ON CONFLICT (node_id) DO UPDATE SET last_sequence = a.last_sequence + 1
                   RETURNING node_id, last_sequence""",
                (sorted(node_id for node_id, _, _ in targets),),
            )
            sequences = {str(n): int(q) for n, q in cur.fetchall()}
            cur.execute(
                """INSERT INTO targets (correction_id, node_id, state, sequence, message,
                       outcomes, updated_at_s)
                   SELECT %s, n, s, q, m, '[]', %s
                   FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::text[])
                       AS t(n, s, q, m)""",
                (
                    correction_id,
                    now_s,
                    [n for n, _, _ in targets],
                    [s.value for _, s, _ in targets],
                    [sequences[n] for n, _, _ in targets],
                    [m for _, _, m in targets],
                ),
            )
        return sequences

    def get_target(self, correction_id: str, node_id: str) -> TargetResult | None:
        rows = self._query(
            "SELECT state, sequence, message, outcomes, updated_at_s FROM targets "
            "WHERE correction_id=%s AND node_id=%s",
            (correction_id, node_id),
        )
        if not rows:
            return None
        return target_from_row((node_id, *rows[0]))

    def target_states(self, correction_id: str) -> dict[str, TargetState]:
        rows = self._query(
            "SELECT node_id, state FROM targets WHERE correction_id=%s", (correction_id,)
        )
        return {str(n): TargetState(s) for n, s in rows}

    def record_acks(
        self, acks: Sequence[tuple[str, CommandAck]], now_s: float
    ) -> list[tuple[str, CommandAck]]:
        """Apply (node, ack) pairs and their audit entries in one transaction.

        Acks for targets that do not exist, that repeat what is already recorded (re-sent
        after a reconnect) or that would change a final outcome (audited as ``ack.ignored``)
        change nothing and are left out of the returned list (see ``store.acks``).
        """
        if not acks:
            return []
        applied: list[tuple[str, CommandAck]] = []
        with self._tx() as cur:
            prev = self._lock_audit_head(cur)
            cur.execute(
                """SELECT t.correction_id, t.node_id, t.state, t.message FROM targets t
                   JOIN unnest(%s::text[], %s::text[]) AS k(c, n)
                     ON t.correction_id = k.c AND t.node_id = k.n
                   ORDER BY t.correction_id, t.node_id
                   FOR NO KEY UPDATE OF t""",
                ([a.correction_id for _, a in acks], [n for n, _ in acks]),
            )
            current = {(str(c), str(n)): (str(s), str(m)) for c, n, s, m in cur.fetchall()}
            entries: list[AuditEntry] = []
            updates: list[tuple[object, ...]] = []
            for node_id, ack in acks:
                key = (ack.correction_id, node_id)
                recorded = current.get(key)
                decision = acks_rules.decide(recorded, ack)
                if decision in (AckDecision.UNKNOWN, AckDecision.REPEAT) or recorded is None:
                    continue  # unknown target, or nothing new
                prev = acks_rules.audit_entry(
                    prev, decision, node_id, ack, recorded_state=recorded[0], now_s=now_s
                )
                entries.append(prev)
                if decision is AckDecision.IGNORE:
                    continue  # a final outcome stays
                updates.append(
                    (
                        ack.state.value,
                        ack.message,
                        outcomes_to_json(ack.outcomes),
                        now_s,
                        ack.correction_id,
                        node_id,
                    )
                )
                current[key] = (ack.state.value, ack.message)
                applied.append((node_id, ack))
            if entries:
                self._insert_audit(cur, entries)
            if updates:
                cur.executemany(
                    """UPDATE targets SET state=%s, message=%s, outcomes=%s, updated_at_s=%s
                       WHERE correction_id=%s AND node_id=%s""",
                    updates,
                )
        return applied

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
        with self._tx() as cur:
            cur.execute(
                """UPDATE targets SET state=%s, message=%s, outcomes=%s, updated_at_s=%s
                   WHERE correction_id=%s AND node_id=%s AND (%s::text IS NULL OR state=%s)
                   RETURNING sequence""",
                (
                    state.value,
                    message,
                    outcomes_to_json(outcomes),
                    now_s,
                    correction_id,
                    node_id,
                    only_if.value if only_if else None,
                    only_if.value if only_if else None,
                ),
            )
            row = cur.fetchone()
        if row is None:
            return None
        return TargetResult(node_id, state, int(row[0]), message, tuple(outcomes), now_s)

    def pending_commands(
        self, node_id: str, after_sequence: int, now_s: float
    ) -> list[PendingCommand]:
        rows = self._query(
            """SELECT t.node_id, t.sequence, c.spec, c.signatures FROM targets t
               JOIN corrections c ON c.correction_id = t.correction_id
               WHERE t.node_id=%s AND t.sequence > %s AND t.state = ANY(%s)
                 AND c.expires_at_s > %s ORDER BY t.sequence""",
            (node_id, after_sequence, list(_UNACKED), now_s),
        )
        return pending_from_rows(rows)

    def pending_for_correction(self, correction_id: str, now_s: float) -> list[PendingCommand]:
        rows = self._query(
            """SELECT t.node_id, t.sequence, c.spec, c.signatures FROM targets t
               JOIN corrections c ON c.correction_id = t.correction_id
               WHERE t.correction_id=%s AND t.state = ANY(%s) AND c.expires_at_s > %s
               ORDER BY t.node_id""",
            (correction_id, list(_UNACKED), now_s),
        )
        return pending_from_rows(rows)

    # --- audit chain ---------------------------------------------------------------------

    def append_audit(
        self, *, ts: float, actor: str, action: str, subject: str, details: dict[str, Any]
    ) -> AuditEntry:
        with self._tx() as cur:
            entry = next_entry(
                self._lock_audit_head(cur),
                ts=ts,
                actor=actor,
                action=action,
                subject=subject,
                details=details,
            )
            self._insert_audit(cur, [entry])
            return entry

    @staticmethod
    def _lock_audit_head(cur: Cursor) -> AuditEntry | None:
        """Take the chain for this transaction and return its newest entry.

        The advisory lock is held until commit, and a commit is visible before its locks are
        released, so the next holder's head read (a new snapshot) sees this transaction's
        entries: appends from any number of replicas form one chain.
        """
        cur.execute(
            "SELECT pg_advisory_xact_lock(%s::integer, %s::integer)", (LOCK_CLASS, AUDIT_LOCK)
        )
        cur.execute(
            "SELECT seq, ts, actor, action, subject, details, prev_hash, hash "
            "FROM audit ORDER BY seq DESC LIMIT 1"
        )
        row = cur.fetchone()
        return audit_from_row(row) if row else None

    @staticmethod
    def _insert_audit(cur: Cursor, entries: Sequence[AuditEntry]) -> None:
        cur.executemany(
            "INSERT INTO audit (seq, ts, actor, action, subject, details, prev_hash, hash) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [audit_row(e) for e in entries],
        )

    def list_audit(self, after_seq: int = 0, limit: int = 0) -> list[AuditEntry]:
        rows = self._query(
            "SELECT seq, ts, actor, action, subject, details, prev_hash, hash FROM audit "
            "WHERE seq > %s ORDER BY seq LIMIT %s",
            (after_seq, limit if limit > 0 else None),
        )
        return [audit_from_row(r) for r in rows]

    def audit_head(self) -> AuditHead:
        rows = self._query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        return AuditHead(int(rows[0][0]), str(rows[0][1])) if rows else AuditHead()

    # --- enrolment and certificates ------------------------------------------------------

    def add_enrolment_token(
        self, token_hash: str, node_id: str, now_s: float, expires_at_s: float
    ) -> None:
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO enrolment_tokens (token_hash, node_id, created_at_s, expires_at_s) "
                "VALUES (%s, %s, %s, %s)",
                (token_hash, node_id, now_s, expires_at_s),
            )

    def use_enrolment_token(self, token_hash: str, node_id: str, now_s: float) -> bool:
        """Spend a token: True once for an unexpired token issued for this node."""
        with self._tx() as cur:
            cur.execute(
                "UPDATE enrolment_tokens SET used_at_s=%s WHERE token_hash=%s AND node_id=%s "
                "AND used_at_s IS NULL AND expires_at_s > %s",
                (now_s, token_hash, node_id, now_s),
            )
            return cur.rowcount == 1

    def record_certificate(
        self, serial: str, node_id: str, issued_at_s: float, not_after_s: float
    ) -> None:
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO certificates (serial, node_id, issued_at_s, not_after_s) "
                "VALUES (%s, %s, %s, %s)",
                (serial, node_id, issued_at_s, not_after_s),
            )

    def certificate_issued_at(self, serial: str) -> float | None:
        rows = self._query("SELECT issued_at_s FROM certificates WHERE serial=%s", (serial,))
        return float(rows[0][0]) if rows else None

    def revoke_node(self, node_id: str, now_s: float, reason: str) -> int:
        """Refuse the node's certificates issued until now; returns how many known ones."""
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO revocations (node_id, revoked_at_s, reason) VALUES (%s, %s, %s) "
                "ON CONFLICT (node_id) DO UPDATE SET revoked_at_s=excluded.revoked_at_s, "
                "reason=excluded.reason",
                (node_id, now_s, reason),
            )
            cur.execute(
                "UPDATE certificates SET revoked_at_s=%s WHERE node_id=%s AND revoked_at_s IS NULL",
                (now_s, node_id),
            )
            return cur.rowcount

    def revoked_before(self, node_id: str) -> float | None:
        """Certificates of this node issued at or before the returned time are revoked."""
        rows = self._query("SELECT revoked_at_s FROM revocations WHERE node_id=%s", (node_id,))
        return float(rows[0][0]) if rows else None


def _columns(rows: Sequence[Sequence[object]], width: int) -> list[list[object]]:
    """Rows as ``width`` column lists, for ``unnest`` of one array parameter per column."""
    return [[row[i] for row in rows] for i in range(width)]
