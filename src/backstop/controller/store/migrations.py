"""Schema migrations, applied in order and recorded in ``schema_migrations``.

Written once for both backends: migration N holds the same tables and columns on SQLite and
PostgreSQL, and the few column types the two spell differently are named in braces and filled
in from the backend's :class:`~backstop.controller.store.dialect.Dialect` (PostgreSQL: BYTEA
for protobuf bytes, DOUBLE PRECISION for times, BOOLEAN for flags, BIGINT for sequence
numbers). JSON columns are TEXT holding the same JSON on both, so an audit entry's
``details`` hash the same on either backend.

Append new migrations; never edit one that has shipped. On PostgreSQL each runs in one
transaction, so a migration that fails leaves nothing behind.
"""

from __future__ import annotations

from backstop.controller.store.dialect import POSTGRES, SQLITE, Dialect

_SHARED: tuple[str, ...] = (
    # 1: nodes, workloads, samples, corrections and per-target results
    """
    CREATE TABLE nodes (
        node_id TEXT PRIMARY KEY,
        info {bytes} NOT NULL,
        connected {flag},
        first_seen_s {time} NOT NULL,
        last_seen_s {time} NOT NULL,
        last_report_seq {int64} NOT NULL DEFAULT 0,
        dropped_reports {int64} NOT NULL DEFAULT 0
    );
    CREATE TABLE workloads (
        workload_id TEXT NOT NULL,
        node_id TEXT NOT NULL REFERENCES nodes(node_id),
        model_hash TEXT NOT NULL DEFAULT '',
        data {bytes} NOT NULL,
        updated_s {time} NOT NULL,
        PRIMARY KEY (node_id, workload_id)
    );
    CREATE INDEX workloads_model_hash ON workloads(model_hash);
    CREATE TABLE gpu_samples (
        id {row_id},
        node_id TEXT NOT NULL,
        gpu_uuid TEXT NOT NULL,
        sampled_at_s {time} NOT NULL,
        data {bytes} NOT NULL
    );
    CREATE INDEX gpu_samples_time ON gpu_samples(sampled_at_s);
    CREATE TABLE corrections (
        correction_id TEXT PRIMARY KEY,
        action TEXT NOT NULL,
        spec {bytes} NOT NULL,
        state TEXT NOT NULL,
        message TEXT NOT NULL DEFAULT '',
        created_at_s {time} NOT NULL,
        updated_at_s {time} NOT NULL,
        expires_at_s {time} NOT NULL,
        completed_at_s {time},
        reverts TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX corrections_state ON corrections(state);
    CREATE TABLE targets (
        correction_id TEXT NOT NULL REFERENCES corrections(correction_id),
        node_id TEXT NOT NULL,
        state TEXT NOT NULL,
        sequence {int64} NOT NULL,
        message TEXT NOT NULL DEFAULT '',
        outcomes TEXT NOT NULL DEFAULT '[]',
        updated_at_s {time} NOT NULL,
        PRIMARY KEY (correction_id, node_id)
    );
    CREATE INDEX targets_node_seq ON targets(node_id, sequence);
    CREATE TABLE agent_sequences (
        node_id TEXT PRIMARY KEY,
        last_sequence {int64} NOT NULL
    );
    """,
    # 2: trust — signatures and approvals, the audit chain, enrolment, issued certificates
    """
    ALTER TABLE corrections ADD COLUMN signatures TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE corrections ADD COLUMN approvals_required INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE audit (
        seq {int64} PRIMARY KEY,
        ts {time} NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT NOT NULL,
        details TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE TABLE enrolment_tokens (
        token_hash TEXT PRIMARY KEY,
        node_id TEXT NOT NULL,
        created_at_s {time} NOT NULL,
        expires_at_s {time} NOT NULL,
        used_at_s {time}
    );
    CREATE TABLE certificates (
        serial TEXT PRIMARY KEY,
        node_id TEXT NOT NULL,
        issued_at_s {time} NOT NULL,
        not_after_s {time} NOT NULL,
        revoked_at_s {time}
    );
    CREATE INDEX certificates_node ON certificates(node_id);
    CREATE TABLE revocations (
        node_id TEXT PRIMARY KEY,
        revoked_at_s {time} NOT NULL,
        reason TEXT NOT NULL DEFAULT ''
    );
    """,
    # 3: replicas — which replica holds each node's stream, and each replica's heartbeat
    """
    ALTER TABLE nodes ADD COLUMN replica TEXT NOT NULL DEFAULT '';
    CREATE TABLE replicas (
        replica_id TEXT PRIMARY KEY,
        heartbeat_s {time} NOT NULL
    );
    """,
    # 4: witnessed heads — the controller audit head each node last reported having received,
    # and the head of the node's own journal (each only ever moves forward)
    """
    ALTER TABLE nodes ADD COLUMN witnessed_audit_seq {int64} NOT NULL DEFAULT 0;
    ALTER TABLE nodes ADD COLUMN witnessed_audit_hash TEXT NOT NULL DEFAULT '';
    ALTER TABLE nodes ADD COLUMN journal_seq {int64} NOT NULL DEFAULT 0;
    ALTER TABLE nodes ADD COLUMN journal_hash TEXT NOT NULL DEFAULT '';
    """,
    # 5: model history — each workload seen holding an identified model, first and last seen
    """
    CREATE TABLE model_sightings (
        model_id TEXT NOT NULL,
        workload_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        first_seen_s {time} NOT NULL,
        last_seen_s {time} NOT NULL,
        model {bytes} NOT NULL,
        PRIMARY KEY (model_id, workload_id)
    );
    CREATE INDEX model_sightings_seen ON model_sightings(last_seen_s);
    """,
    # 6: policies — every version of each policy as applied (the exact document bytes), its
    # state, and the signatures over those bytes
    """
    CREATE TABLE policies (
        name TEXT NOT NULL,
        version {int64} NOT NULL,
        document {bytes} NOT NULL,
        digest TEXT NOT NULL,
        action TEXT NOT NULL,
        state TEXT NOT NULL,
        applied_by TEXT NOT NULL,
        applied_s {time} NOT NULL,
        ended_s {time},
        PRIMARY KEY (name, version)
    );
    CREATE INDEX policies_state ON policies(state);
    CREATE TABLE policy_signatures (
        name TEXT NOT NULL,
        version {int64} NOT NULL,
        key_id TEXT NOT NULL,
        signer TEXT NOT NULL,
        role TEXT NOT NULL,
        signature {bytes} NOT NULL,
        signed_at_s {time} NOT NULL,
        PRIMARY KEY (name, version, key_id)
    );
    """,
    # 7: alerts — one row per condition (its dedup key), firing, acknowledged or resolved;
    # and the delivery queue: one row per alert per sink per change, retried until delivered
    """
    CREATE TABLE alerts (
        alert_id TEXT PRIMARY KEY,
        dedup_key TEXT NOT NULL UNIQUE,
        policy TEXT NOT NULL,
        policy_version {int64} NOT NULL,
        severity TEXT NOT NULL,
        node_id TEXT NOT NULL,
        workload_id TEXT NOT NULL,
        summary TEXT NOT NULL,
        details TEXT NOT NULL,
        state TEXT NOT NULL,
        raised_s {time} NOT NULL,
        last_seen_s {time} NOT NULL,
        acked_by TEXT NOT NULL DEFAULT '',
        acked_s {time},
        resolved_s {time}
    );
    CREATE INDEX alerts_state ON alerts(state, raised_s);
    CREATE TABLE alert_deliveries (
        delivery_id {serial},
        alert_id TEXT NOT NULL REFERENCES alerts(alert_id),
        sink TEXT NOT NULL,
        payload TEXT NOT NULL,
        attempts {int64} NOT NULL DEFAULT 0,
        next_attempt_s {time} NOT NULL,
        delivered_s {time},
        last_error TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX alert_deliveries_due ON alert_deliveries(delivered_s, next_attempt_s);
    CREATE INDEX alert_deliveries_alert ON alert_deliveries(alert_id, sink, delivery_id);
    """,
    # 8: incidents, and what finds an incident's corrections (its id, copied from the signed
    # spec) and their audit entries (by subject) without reading every one
    """
    CREATE TABLE incidents (
        incident_id TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        severity TEXT NOT NULL,
        state TEXT NOT NULL,
        opened_by TEXT NOT NULL,
        opened_s {time} NOT NULL,
        closed_by TEXT NOT NULL DEFAULT '',
        closed_s {time},
        summary TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX incidents_opened ON incidents(opened_s);
    ALTER TABLE corrections ADD COLUMN incident TEXT NOT NULL DEFAULT '';
    CREATE INDEX corrections_incident ON corrections(incident);
    CREATE INDEX corrections_reverts ON corrections(reverts);
    CREATE INDEX audit_subject ON audit(subject);
    """,
)


def migrations(dialect: Dialect) -> tuple[str, ...]:
    """The migrations in the column types of ``dialect``."""
    return tuple(script.format_map(dialect.column_types) for script in _SHARED)


MIGRATIONS = migrations(SQLITE)
"""The SQLite store's migrations."""
POSTGRES_MIGRATIONS = migrations(POSTGRES)
"""The PostgreSQL store's migrations."""
