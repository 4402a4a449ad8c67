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

:meth:`PostgresStore.notify` and :meth:`PostgresStore.listen` expose LISTEN/NOTIFY (see
``store.postgres_listener``); every method borrows a pooled connection (``store.postgres_pool``)
for one transaction, and a broken one surfaces as :class:`~backstop.core.errors.StoreError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import TupleRow

from backstop.controller.store import acks as acks_rules
from backstop.controller.store.acks import AckDecision
from backstop.controller.store.base import NewTarget
from backstop.controller.store.dialect import POSTGRES
from backstop.controller.store.migrations import POSTGRES_MIGRATIONS
from backstop.controller.store.postgres_listener import (
    Listener,
    check_channel,
    check_payload,
    open_listener,
)
from backstop.controller.store.postgres_pool import ConnectionPool
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
from backstop.core.errors import InvalidInput, StoreError
from backstop.core.models import CommandAck, Report, TargetState
from backstop.security.audit import AuditEntry

log = logging.getLogger(__name__)

Cursor = psycopg.Cursor[TupleRow]

LOCK_CLASS = 0x42535450
"""First key of every advisory lock Backstop takes (``b"BSTP"``); the second names the lock."""
MIGRATION_LOCK = 1
AUDIT_LOCK = 2


class PostgresStore(SqlStore):
    """:class:`~backstop.controller.store.base.Store` on a PostgreSQL database, shared by replicas.

    ``dsn`` is a libpq connection string or URL (``postgresql://user@host:5432/db``). Opening
    applies pending migrations. ``pool_size`` bounds the connections this instance holds;
    a call waits up to ``pool_wait_s`` for a free one.
    """

    dialect = POSTGRES

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
        self._sighted: dict[tuple[str, str], float] = {}
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
                return conn.execute(POSTGRES.placeholders(query), args).fetchall()
            except psycopg.Error as exc:
                raise StoreError(f"store query failed: {exc}") from exc

    def _write(self, *statements: Statement) -> list[int]:
        counts = []
        with self._tx() as cur:
            for query, args in statements:
                cur.execute(POSTGRES.placeholders(query), args)
                counts.append(cur.rowcount)
        return counts

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
            for version, script in enumerate(POSTGRES_MIGRATIONS, start=1):
                if version in applied:
                    continue
                cur.execute(script.encode())  # several statements, no parameters
                cur.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                log.info("applied store migration %d", version, extra={"version": version})

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
            sightings = batch.sighting_rows(now_s, self._sighted)
            if sightings:
                cur.executemany(POSTGRES.placeholders(SIGHTING_UPSERT), sightings)
        return batch.results

    # --- corrections ---------------------------------------------------------------------

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
        self, correction_id: str, targets: Sequence[NewTarget], now_s: float
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

    def record_acks(
        self, acks: Sequence[tuple[str, CommandAck]], now_s: float
    ) -> list[tuple[str, CommandAck]]:
        """The chain and the target rows compared are locked first: an ack is applied once."""
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
                updates.append(acks_rules.applied_row(node_id, ack, now_s))
                current[key] = (ack.state.value, ack.message)
                applied.append((node_id, ack))
            if entries:
                self._insert_audit(cur, entries)
            if updates:
                cur.executemany(POSTGRES.placeholders(acks_rules.APPLY_SQL), updates)
        return applied

    # --- audit chain ---------------------------------------------------------------------

    def _rewrite(self, query: str, args: Sequence[object], rewrite: Rewrite) -> None:
        with self._tx() as cur:
            cur.execute(POSTGRES.placeholders(f"{query} FOR NO KEY UPDATE"), args)
            for statement, values in rewrite(cur.fetchall()):
                cur.execute(POSTGRES.placeholders(statement), values)

    def _chain(self, make: Callable[[AuditEntry | None], AuditEntry]) -> AuditEntry:
        with self._tx() as cur:
            entry = make(self._lock_audit_head(cur))
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
        cur.execute(AUDIT_HEAD)
        row = cur.fetchone()
        return audit_from_row(row) if row else None

    @staticmethod
    def _insert_audit(cur: Cursor, entries: Sequence[AuditEntry]) -> None:
        cur.executemany(POSTGRES.placeholders(AUDIT_INSERT), [audit_row(e) for e in entries])

    # --- enrolment and certificates ------------------------------------------------------


def _columns(rows: Sequence[Sequence[object]], width: int) -> list[list[object]]:
    """Rows as ``width`` column lists, for ``unnest`` of one array parameter per column."""
    return [[row[i] for row in rows] for i in range(width)]
