"""Schema migrations, applied in order and recorded in ``schema_migrations``.

Append new migrations; never edit one that has shipped.
"""

MIGRATIONS: tuple[str, ...] = (
    # 1: nodes, workloads, samples, corrections and per-target results
    """
    CREATE TABLE nodes (
        node_id TEXT PRIMARY KEY,
        info BLOB NOT NULL,
        connected INTEGER NOT NULL DEFAULT 0,
        first_seen_s REAL NOT NULL,
        last_seen_s REAL NOT NULL,
        last_report_seq INTEGER NOT NULL DEFAULT 0,
        dropped_reports INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE workloads (
        workload_id TEXT NOT NULL,
        node_id TEXT NOT NULL REFERENCES nodes(node_id),
        model_hash TEXT NOT NULL DEFAULT '',
        data BLOB NOT NULL,
        updated_s REAL NOT NULL,
        PRIMARY KEY (node_id, workload_id)
    );
    CREATE INDEX workloads_model_hash ON workloads(model_hash);
    CREATE TABLE gpu_samples (
        id INTEGER PRIMARY KEY,
        node_id TEXT NOT NULL,
        gpu_uuid TEXT NOT NULL,
        sampled_at_s REAL NOT NULL,
        data BLOB NOT NULL
    );
    CREATE INDEX gpu_samples_time ON gpu_samples(sampled_at_s);
    CREATE TABLE corrections (
        correction_id TEXT PRIMARY KEY,
        action TEXT NOT NULL,
        spec BLOB NOT NULL,
        state TEXT NOT NULL,
        message TEXT NOT NULL DEFAULT '',
        created_at_s REAL NOT NULL,
        updated_at_s REAL NOT NULL,
        expires_at_s REAL NOT NULL,
        completed_at_s REAL,
        reverts TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX corrections_state ON corrections(state);
    CREATE TABLE targets (
        correction_id TEXT NOT NULL REFERENCES corrections(correction_id),
        node_id TEXT NOT NULL,
        state TEXT NOT NULL,
        sequence INTEGER NOT NULL,
        message TEXT NOT NULL DEFAULT '',
        outcomes TEXT NOT NULL DEFAULT '[]',
        updated_at_s REAL NOT NULL,
        PRIMARY KEY (correction_id, node_id)
    );
    CREATE INDEX targets_node_seq ON targets(node_id, sequence);
    CREATE TABLE agent_sequences (
        node_id TEXT PRIMARY KEY,
        last_sequence INTEGER NOT NULL
    )
    """,
)

MIGRATIONS += (
    # 2: trust — signatures and approvals, the audit chain, enrolment, issued certificates
    """
    ALTER TABLE corrections ADD COLUMN signatures TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE corrections ADD COLUMN approvals_required INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
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
        created_at_s REAL NOT NULL,
        expires_at_s REAL NOT NULL,
        used_at_s REAL
    );
    CREATE TABLE certificates (
        serial TEXT PRIMARY KEY,
        node_id TEXT NOT NULL,
        issued_at_s REAL NOT NULL,
        not_after_s REAL NOT NULL,
        revoked_at_s REAL
    );
    CREATE INDEX certificates_node ON certificates(node_id);
    CREATE TABLE revocations (
        node_id TEXT PRIMARY KEY,
        revoked_at_s REAL NOT NULL,
        reason TEXT NOT NULL DEFAULT ''
    )
    """,
)

MIGRATIONS += (
    # 3: replicas — which replica holds each node's stream, and each replica's heartbeat
    """
    ALTER TABLE nodes ADD COLUMN replica TEXT NOT NULL DEFAULT '';
    CREATE TABLE replicas (
        replica_id TEXT PRIMARY KEY,
        heartbeat_s REAL NOT NULL
    )
    """,
)

MIGRATIONS += (
    # 4: witnessed heads — the controller audit head each node last reported having received,
    # and the head of the node's own journal (each only ever moves forward)
    """
    ALTER TABLE nodes ADD COLUMN witnessed_audit_seq INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE nodes ADD COLUMN witnessed_audit_hash TEXT NOT NULL DEFAULT '';
    ALTER TABLE nodes ADD COLUMN journal_seq INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE nodes ADD COLUMN journal_hash TEXT NOT NULL DEFAULT ''
    """,
)

MIGRATIONS += (
    # 5: model history — each workload seen holding an identified model, first and last seen
    """
    CREATE TABLE model_sightings (
        model_id TEXT NOT NULL,
        workload_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        first_seen_s REAL NOT NULL,
        last_seen_s REAL NOT NULL,
        model BLOB NOT NULL,
        PRIMARY KEY (model_id, workload_id)
    );
    CREATE INDEX model_sightings_seen ON model_sightings(last_seen_s)
    """,
)

MIGRATIONS += (
    # 6: policies — every version of each policy as applied (the exact document bytes), its
    # state (proposed until its quorum signed, then active; superseded or deleted after), and
    # the signatures over those bytes
    """
    CREATE TABLE policies (
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        document BLOB NOT NULL,
        digest TEXT NOT NULL,
        action TEXT NOT NULL,
        state TEXT NOT NULL,
        applied_by TEXT NOT NULL,
        applied_s REAL NOT NULL,
        ended_s REAL,
        PRIMARY KEY (name, version)
    );
    CREATE INDEX policies_state ON policies(state);
    CREATE TABLE policy_signatures (
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        key_id TEXT NOT NULL,
        signer TEXT NOT NULL,
        role TEXT NOT NULL,
        signature BLOB NOT NULL,
        signed_at_s REAL NOT NULL,
        PRIMARY KEY (name, version, key_id)
    )
    """,
)

MIGRATIONS += (
    # 7: alerts — one row per condition (its dedup key), firing, acknowledged or resolved; and
    # the delivery queue: one row per alert per sink per change, retried until delivered
    """
    CREATE TABLE alerts (
        alert_id TEXT PRIMARY KEY,
        dedup_key TEXT NOT NULL UNIQUE,
        policy TEXT NOT NULL,
        policy_version INTEGER NOT NULL,
        severity TEXT NOT NULL,
        node_id TEXT NOT NULL,
        workload_id TEXT NOT NULL,
        summary TEXT NOT NULL,
        details TEXT NOT NULL,
        state TEXT NOT NULL,
        raised_s REAL NOT NULL,
        last_seen_s REAL NOT NULL,
        acked_by TEXT NOT NULL DEFAULT '',
        acked_s REAL,
        resolved_s REAL
    );
    CREATE INDEX alerts_state ON alerts(state, raised_s);
    CREATE TABLE alert_deliveries (
        delivery_id INTEGER PRIMARY KEY AUTOINCREMENT,
        alert_id TEXT NOT NULL REFERENCES alerts(alert_id),
        sink TEXT NOT NULL,
        payload TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_s REAL NOT NULL,
        delivered_s REAL,
        last_error TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX alert_deliveries_due ON alert_deliveries(delivered_s, next_attempt_s);
    CREATE INDEX alert_deliveries_alert ON alert_deliveries(alert_id, sink, delivery_id)
    """,
)

MIGRATIONS += (
    # 8: incidents, and what finds an incident's corrections (its id, copied from the signed
    # spec) and their audit entries (by subject) without reading every one
    """
    CREATE TABLE incidents (
        incident_id TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        severity TEXT NOT NULL,
        state TEXT NOT NULL,
        opened_by TEXT NOT NULL,
        opened_s REAL NOT NULL,
        closed_by TEXT NOT NULL DEFAULT '',
        closed_s REAL,
        summary TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX incidents_opened ON incidents(opened_s);
    ALTER TABLE corrections ADD COLUMN incident TEXT NOT NULL DEFAULT '';
    CREATE INDEX corrections_incident ON corrections(incident);
    CREATE INDEX corrections_reverts ON corrections(reverts);
    CREATE INDEX audit_subject ON audit(subject)
    """,
)
