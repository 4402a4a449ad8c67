"""PostgreSQL schema migrations, applied in order and recorded in ``schema_migrations``.

Migration N here holds the same tables and columns as migration N of the SQLite store
(``migrations.py``), in PostgreSQL types: BYTEA for protobuf bytes, DOUBLE PRECISION for times,
BOOLEAN for flags, BIGINT for sequence numbers. JSON columns stay TEXT holding the JSON the
SQLite store writes, so an audit entry's ``details`` hash the same on both backends.

Append new migrations; never edit one that has shipped. Each runs in one transaction, so a
migration that fails leaves nothing behind.
"""

MIGRATIONS: tuple[str, ...] = (
    # 1: nodes, workloads, samples, corrections and per-target results
    """
    CREATE TABLE nodes (
        node_id TEXT PRIMARY KEY,
        info BYTEA NOT NULL,
        connected BOOLEAN NOT NULL DEFAULT FALSE,
        first_seen_s DOUBLE PRECISION NOT NULL,
        last_seen_s DOUBLE PRECISION NOT NULL,
        last_report_seq BIGINT NOT NULL DEFAULT 0,
        dropped_reports BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE workloads (
        workload_id TEXT NOT NULL,
        node_id TEXT NOT NULL REFERENCES nodes(node_id),
        model_hash TEXT NOT NULL DEFAULT '',
        data BYTEA NOT NULL,
        updated_s DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (node_id, workload_id)
    );
    CREATE INDEX workloads_model_hash ON workloads(model_hash);
    CREATE TABLE gpu_samples (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        node_id TEXT NOT NULL,
        gpu_uuid TEXT NOT NULL,
        sampled_at_s DOUBLE PRECISION NOT NULL,
        data BYTEA NOT NULL
    );
    CREATE INDEX gpu_samples_time ON gpu_samples(sampled_at_s);
    CREATE TABLE corrections (
        correction_id TEXT PRIMARY KEY,
        action TEXT NOT NULL,
        spec BYTEA NOT NULL,
        state TEXT NOT NULL,
        message TEXT NOT NULL DEFAULT '',
        created_at_s DOUBLE PRECISION NOT NULL,
        updated_at_s DOUBLE PRECISION NOT NULL,
        expires_at_s DOUBLE PRECISION NOT NULL,
        completed_at_s DOUBLE PRECISION,
        reverts TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX corrections_state ON corrections(state);
    CREATE TABLE targets (
        correction_id TEXT NOT NULL REFERENCES corrections(correction_id),
        node_id TEXT NOT NULL,
        state TEXT NOT NULL,
        sequence BIGINT NOT NULL,
        message TEXT NOT NULL DEFAULT '',
        outcomes TEXT NOT NULL DEFAULT '[]',
        updated_at_s DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (correction_id, node_id)
    );
    CREATE INDEX targets_node_seq ON targets(node_id, sequence);
    CREATE TABLE agent_sequences (
        node_id TEXT PRIMARY KEY,
        last_sequence BIGINT NOT NULL
    );
    """,
    # 2: trust — signatures and approvals, the audit chain, enrolment, issued certificates
    """
    ALTER TABLE corrections ADD COLUMN signatures TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE corrections ADD COLUMN approvals_required INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE audit (
        seq BIGINT PRIMARY KEY,
        ts DOUBLE PRECISION NOT NULL,
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
        created_at_s DOUBLE PRECISION NOT NULL,
        expires_at_s DOUBLE PRECISION NOT NULL,
        used_at_s DOUBLE PRECISION
    );
    CREATE TABLE certificates (
        serial TEXT PRIMARY KEY,
        node_id TEXT NOT NULL,
        issued_at_s DOUBLE PRECISION NOT NULL,
        not_after_s DOUBLE PRECISION NOT NULL,
        revoked_at_s DOUBLE PRECISION
    );
    CREATE INDEX certificates_node ON certificates(node_id);
    CREATE TABLE revocations (
        node_id TEXT PRIMARY KEY,
        revoked_at_s DOUBLE PRECISION NOT NULL,
        reason TEXT NOT NULL DEFAULT ''
    );
    """,
    # 3: replicas — which replica holds each node's stream, and each replica's heartbeat
    """
    ALTER TABLE nodes ADD COLUMN replica TEXT NOT NULL DEFAULT '';
    CREATE TABLE replicas (
        replica_id TEXT PRIMARY KEY,
        heartbeat_s DOUBLE PRECISION NOT NULL
    );
    """,
    # 4: witnessed heads — the controller audit head each node last reported having received,
    # and the head of the node's own journal (each only ever moves forward)
    """
    ALTER TABLE nodes ADD COLUMN witnessed_audit_seq BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE nodes ADD COLUMN witnessed_audit_hash TEXT NOT NULL DEFAULT '';
    ALTER TABLE nodes ADD COLUMN journal_seq BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE nodes ADD COLUMN journal_hash TEXT NOT NULL DEFAULT '';
    """,
    # 5: model history — each workload seen holding an identified model, first and last seen
    """
    CREATE TABLE model_sightings (
        model_id TEXT NOT NULL,
        workload_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        first_seen_s DOUBLE PRECISION NOT NULL,
        last_seen_s DOUBLE PRECISION NOT NULL,
        model BYTEA NOT NULL,
        PRIMARY KEY (model_id, workload_id)
    );
    CREATE INDEX model_sightings_seen ON model_sightings(last_seen_s);
    """,
    # 6: policies — every version of each policy as applied (the exact document bytes), its
    # state, and the signatures over those bytes
    """
    CREATE TABLE policies (
        name TEXT NOT NULL,
        version BIGINT NOT NULL,
        document BYTEA NOT NULL,
        digest TEXT NOT NULL,
        action TEXT NOT NULL,
        state TEXT NOT NULL,
        applied_by TEXT NOT NULL,
        applied_s DOUBLE PRECISION NOT NULL,
        ended_s DOUBLE PRECISION,
        PRIMARY KEY (name, version)
    );
    CREATE INDEX policies_state ON policies(state);
    CREATE TABLE policy_signatures (
        name TEXT NOT NULL,
        version BIGINT NOT NULL,
        key_id TEXT NOT NULL,
        signer TEXT NOT NULL,
        role TEXT NOT NULL,
        signature BYTEA NOT NULL,
        signed_at_s DOUBLE PRECISION NOT NULL,
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
        policy_version BIGINT NOT NULL,
        severity TEXT NOT NULL,
        node_id TEXT NOT NULL,
        workload_id TEXT NOT NULL,
        summary TEXT NOT NULL,
        details TEXT NOT NULL,
        state TEXT NOT NULL,
        raised_s DOUBLE PRECISION NOT NULL,
        last_seen_s DOUBLE PRECISION NOT NULL,
        acked_by TEXT NOT NULL DEFAULT '',
        acked_s DOUBLE PRECISION,
        resolved_s DOUBLE PRECISION
    );
    CREATE INDEX alerts_state ON alerts(state, raised_s);
    CREATE TABLE alert_deliveries (
        delivery_id BIGSERIAL PRIMARY KEY,
        alert_id TEXT NOT NULL REFERENCES alerts(alert_id),
        sink TEXT NOT NULL,
        payload TEXT NOT NULL,
        attempts BIGINT NOT NULL DEFAULT 0,
        next_attempt_s DOUBLE PRECISION NOT NULL,
        delivered_s DOUBLE PRECISION,
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
        opened_s DOUBLE PRECISION NOT NULL,
        closed_by TEXT NOT NULL DEFAULT '',
        closed_s DOUBLE PRECISION,
        summary TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX incidents_opened ON incidents(opened_s);
    ALTER TABLE corrections ADD COLUMN incident TEXT NOT NULL DEFAULT '';
    CREATE INDEX corrections_incident ON corrections(incident);
    CREATE INDEX corrections_reverts ON corrections(reverts);
    CREATE INDEX audit_subject ON audit(subject);
    """,
)
