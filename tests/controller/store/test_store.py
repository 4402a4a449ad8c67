"""The store contract, run against every backend (the ``store`` fixture is parametrized)."""

from __future__ import annotations

import pytest

from backstop.controller.store import Store, open_store
from backstop.controller.store.migrations import MIGRATIONS, POSTGRES_MIGRATIONS
from backstop.controller.store.postgres import PostgresStore
from backstop.controller.store.sqlite import SqliteStore
from backstop.core.errors import InvalidInput, NotFound
from backstop.core.models import (
    AuditHead,
    CorrectionState,
    Fingerprint,
    GpuSample,
    Report,
    TargetResult,
    TargetState,
    Workload,
    WorkloadOutcome,
)
from backstop.wire import convert
from tests.controller.conftest import node, spec


def _workload(wid: str, node_id: str = "n1", model_hash: str = "") -> Workload:
    return Workload(wid, node_id, 100, (100, 101), Fingerprint(exe="/bin/x", model_hash=model_hash))


def test_nodes_upsert_and_connection_state(store: Store) -> None:
    store.upsert_node(node("n1", gpus=2), 10.0)
    store.upsert_node(node("n2"), 11.0)
    records = store.list_nodes()
    assert [r.info.node_id for r in records] == ["n1", "n2"]
    assert records[0].info.gpus[1].uuid == "GPU-n1-1"
    assert records[0].connected
    store.set_connected("n1", False, 12.0)
    got = store.get_node("n1")
    assert got is not None
    assert not got.connected
    assert got.last_seen_s == 12.0
    store.mark_all_disconnected()
    assert not any(r.connected for r in store.list_nodes())
    assert store.get_node("nope") is None


def test_report_replaces_workloads_and_stores_samples(store: Store) -> None:
    store.upsert_node(node("n1"), 1.0)
    gpu = GpuSample(0, "GPU-n1-0", "H100", utilization_pct=50)
    assert store.record_report(
        Report("n1", 1, 5.0, (gpu,), (_workload("wl-a"), _workload("wl-b"))), 5.0
    )
    assert [w.workload_id for w in store.list_workloads("n1")] == ["wl-a", "wl-b"]
    assert store.record_report(Report("n1", 2, 6.0, (gpu,), (_workload("wl-b"),)), 6.0)
    assert [w.workload_id for w in store.list_workloads()] == ["wl-b"]
    assert store.count_samples() == 2
    record = store.get_node("n1")
    assert record is not None
    assert record.workload_count == 1


def test_duplicate_report_sequence_changes_nothing(store: Store) -> None:
    store.upsert_node(node("n1"), 1.0)
    assert store.record_report(Report("n1", 5, 5.0, (), (_workload("wl-a"),)), 5.0)
    assert not store.record_report(Report("n1", 5, 6.0, (), ()), 6.0)
    assert not store.record_report(Report("n1", 4, 6.0, (), ()), 6.0)
    assert [w.workload_id for w in store.list_workloads()] == ["wl-a"]


def test_a_batch_of_reports_is_decided_report_by_report(store: Store) -> None:
    store.upsert_node(node("n1"), 1.0)
    store.upsert_node(node("n2"), 1.0)
    gpu = GpuSample(0, "GPU-n1-0", "H100", utilization_pct=50)
    assert store.record_report(Report("n2", 5, 1.0, (gpu,), (_workload("wl-old", "n2"),)), 1.0)
    encoded = convert.report_from_pb(
        convert.report_to_pb(Report("n1", 2, 3.0, (gpu, GpuSample(1, "GPU-n1-1", "H100")))),
        "n1",
        decode_gpus=False,
    )
    results = store.record_reports(
        [
            Report("n1", 1, 2.0, (gpu,), (_workload("wl-a"),)),
            encoded,  # two GPUs, as the controller receives them: encoded
            Report("n1", 2, 3.0, (gpu,)),  # the same sequence again in one batch: a repeat
            Report("n2", 4, 3.0, (gpu,)),  # older than what is stored: a repeat
            Report("n9", 1, 3.0, (gpu,)),  # unknown node
            Report("n2", 6, 4.0, (gpu,), (_workload("wl-new", "n2"),)),
        ],
        5.0,
    )
    assert results == [True, True, False, False, None, True]
    assert store.last_report_sequence("n1") == 2
    assert store.last_report_sequence("n2") == 6
    assert store.count_samples() == 1 + 1 + 2 + 1
    # the newest stored report's workloads replace the node's (n1's newest had none)
    assert [w.workload_id for w in store.list_workloads("n1")] == []
    assert [w.workload_id for w in store.list_workloads("n2")] == ["wl-new"]
    assert store.record_reports([], 6.0) == []


def test_report_from_unknown_node_is_refused(store: Store) -> None:
    with pytest.raises(NotFound):
        store.record_report(Report("ghost", 1, 1.0), 1.0)


def test_sample_retention(store: Store) -> None:
    store.upsert_node(node("n1"), 1.0)
    gpu = GpuSample(0, "GPU-n1-0", "H100")
    store.record_report(Report("n1", 1, 100.0, (gpu,)), 100.0)
    store.record_report(Report("n1", 2, 200.0, (gpu,)), 200.0)
    assert store.prune_samples(150.0) == 1
    assert store.count_samples() == 1


def test_correction_lifecycle_and_targets(store: Store) -> None:
    store.create_correction(spec("cor-1"), CorrectionState.APPROVED, 1.0)
    seq_a = store.add_target("cor-1", "n1", TargetState.DISPATCHED, 2.0)
    seq_b = store.add_target("cor-1", "n2", TargetState.UNREACHABLE, 2.0)
    store.create_correction(spec("cor-2"), CorrectionState.APPROVED, 3.0)
    seq_a2 = store.add_target("cor-2", "n1", TargetState.DISPATCHED, 3.0)
    assert (seq_a, seq_b, seq_a2) == (1, 1, 2)  # per-node, strictly increasing
    outcome = WorkloadOutcome("wl-a", (1, 2), "applied", "sigstop")
    target = store.update_target(
        "cor-1", "n1", TargetState.APPLIED, message="ok", outcomes=(outcome,), now_s=4.0
    )
    assert target is not None
    assert target.sequence == 1
    store.set_correction_state("cor-1", CorrectionState.COMPLETED, "done", 5.0, completed=True)
    got = store.get_correction("cor-1")
    assert got is not None
    assert got.spec == spec("cor-1")
    assert got.state is CorrectionState.COMPLETED
    assert got.completed_at_s == 5.0
    assert {t.node_id: t.state for t in got.targets} == {
        "n1": TargetState.APPLIED,
        "n2": TargetState.UNREACHABLE,
    }
    assert got.targets[0].outcomes == (outcome,)
    assert [c.spec.correction_id for c in store.list_corrections()] == ["cor-2", "cor-1"]
    assert [c.spec.correction_id for c in store.list_open_corrections()] == ["cor-2"]
    assert (
        store.update_target("cor-1", "n9", TargetState.APPLIED, message="", outcomes=(), now_s=1)
        is None
    )
    with pytest.raises(NotFound):
        store.set_correction_state("cor-9", CorrectionState.COMPLETED, "", 1.0)


def test_pending_commands_for_redelivery(store: Store) -> None:
    store.create_correction(spec("cor-1"), CorrectionState.APPROVED, 1.0)
    store.create_correction(spec("cor-2", expires_at_s=50.0), CorrectionState.APPROVED, 1.0)
    store.create_correction(spec("cor-3"), CorrectionState.APPROVED, 1.0)
    store.add_target("cor-1", "n1", TargetState.DISPATCHED, 1.0)  # seq 1
    store.add_target("cor-2", "n1", TargetState.UNREACHABLE, 1.0)  # seq 2, expires at 50
    store.add_target("cor-3", "n1", TargetState.UNREACHABLE, 1.0)  # seq 3
    store.update_target("cor-1", "n1", TargetState.APPLIED, message="", outcomes=(), now_s=2.0)
    pending = store.pending_commands("n1", 0, now_s=100.0)
    assert [(p.sequence, p.spec.correction_id) for p in pending] == [(3, "cor-3")]
    assert store.pending_commands("n1", 3, now_s=100.0) == []
    assert [p.sequence for p in store.pending_commands("n1", 0, now_s=10.0)] == [2, 3]


def test_pending_commands_of_one_correction(store: Store) -> None:
    store.create_correction(spec("cor-1"), CorrectionState.APPROVED, 1.0)
    store.create_correction(spec("cor-2", expires_at_s=50.0), CorrectionState.APPROVED, 1.0)
    sequences = store.add_targets(
        "cor-1",
        [
            ("n1", TargetState.DISPATCHED, ""),
            ("n2", TargetState.UNREACHABLE, "away"),
            ("n3", TargetState.DISPATCHED, ""),
        ],
        1.0,
    )
    store.add_target("cor-2", "n1", TargetState.DISPATCHED, 1.0)
    store.update_target("cor-1", "n3", TargetState.APPLIED, message="", outcomes=(), now_s=2.0)
    pending = store.pending_for_correction("cor-1", now_s=100.0)
    assert [(p.node_id, p.sequence) for p in pending] == [
        ("n1", sequences["n1"]),
        ("n2", sequences["n2"]),
    ]
    assert all(p.spec == spec("cor-1") and p.spec_bytes for p in pending)
    assert store.pending_for_correction("cor-2", now_s=100.0) == []  # expired
    assert store.pending_for_correction("cor-9", now_s=1.0) == []


def test_update_target_only_if_it_is_still_in_a_state(store: Store) -> None:
    store.create_correction(spec("cor-1"), CorrectionState.APPROVED, 1.0)
    store.add_target("cor-1", "n1", TargetState.DISPATCHED, 1.0)
    store.update_target("cor-1", "n1", TargetState.APPLIED, message="ok", outcomes=(), now_s=2.0)

    def expire(node_id: str) -> TargetResult | None:
        return store.update_target(
            "cor-1",
            node_id,
            TargetState.UNREACHABLE,
            message="no ack",
            outcomes=(),
            now_s=3.0,
            only_if=TargetState.DISPATCHED,
        )

    assert expire("n1") is None  # acknowledged meanwhile: left as it is
    assert store.target_states("cor-1") == {"n1": TargetState.APPLIED}
    store.add_target("cor-1", "n2", TargetState.DISPATCHED, 1.0)
    changed = expire("n2")
    assert changed is not None
    assert changed.state is TargetState.UNREACHABLE


def test_a_node_moves_between_replicas(store: Store) -> None:
    store.upsert_node(node("n1"), 1.0, "replica-a")
    record = store.get_node("n1")
    assert record is not None
    assert (record.connected, record.replica) == (True, "replica-a")
    store.upsert_node(node("n1"), 2.0, "replica-b")  # reconnected to b before a noticed
    store.set_connected("n1", False, 3.0, "replica-a")  # a's stale stream ends: no effect
    record = store.get_node("n1")
    assert record is not None
    assert (record.connected, record.replica) == (True, "replica-b")
    store.set_connected("n1", False, 4.0, "replica-b")
    record = store.get_node("n1")
    assert record is not None
    assert (record.connected, record.replica) == (False, "")


def test_heartbeat_releases_the_nodes_of_a_silent_replica(store: Store) -> None:
    store.heartbeat("replica-a", 100.0, stale_after_s=10.0)
    store.heartbeat("replica-b", 100.0, stale_after_s=10.0)
    store.upsert_node(node("n1"), 100.0, "replica-a")
    store.upsert_node(node("n2"), 100.0, "replica-b")
    store.upsert_node(node("n3"), 100.0)  # no replica named: never released by heartbeats
    assert store.heartbeat("replica-a", 105.0, stale_after_s=10.0) == 0
    assert store.heartbeat("replica-a", 115.0, stale_after_s=10.0) == 1  # b silent since 100
    connected = {r.info.node_id: (r.connected, r.replica) for r in store.list_nodes()}
    assert connected == {
        "n1": (True, "replica-a"),
        "n2": (False, ""),
        "n3": (True, ""),
    }


def test_node_heads_are_kept_and_only_move_forward(store: Store) -> None:
    store.upsert_node(node("n1"), 1.0)
    store.upsert_node(node("n2"), 1.0)
    record = store.get_node("n1")
    assert record is not None
    assert (record.witnessed_audit_head, record.journal_head) == (AuditHead(), AuditHead())
    store.record_node_heads("n1", AuditHead(7, "a" * 64), AuditHead(3, "b" * 64))
    # older (a trimmed journal, a replayed report) or empty heads never replace newer ones
    store.record_node_heads("n1", AuditHead(5, "c" * 64), AuditHead())
    store.record_node_heads("n1", AuditHead(7, "d" * 64), AuditHead(4, "e" * 64))
    store.record_node_heads("nope", AuditHead(1, "f" * 64), AuditHead())
    heads = {r.info.node_id: (r.witnessed_audit_head, r.journal_head) for r in store.list_nodes()}
    assert heads == {
        "n1": (AuditHead(7, "a" * 64), AuditHead(4, "e" * 64)),
        "n2": (AuditHead(), AuditHead()),
    }
    store.upsert_node(node("n1"), 2.0)  # a new Hello's inventory keeps them
    record = store.get_node("n1")
    assert record is not None
    assert record.journal_head == AuditHead(4, "e" * 64)


def test_audit_head_is_the_newest_entry(store: Store) -> None:
    assert store.audit_head() == AuditHead()
    store.append_audit(ts=1.0, actor="a", action="x", subject="s", details={})
    last = store.append_audit(ts=2.0, actor="a", action="y", subject="s", details={})
    assert store.audit_head() == AuditHead(2, last.hash)


def test_state_survives_reopen(store_url: str) -> None:
    first = open_store(store_url)
    first.upsert_node(node("n1"), 1.0)
    first.create_correction(spec("cor-1"), CorrectionState.APPROVED, 1.0)
    first.close()
    second = open_store(store_url)
    assert isinstance(second, SqliteStore | PostgresStore)
    migrations = MIGRATIONS if isinstance(second, SqliteStore) else POSTGRES_MIGRATIONS
    assert second.schema_version() == len(migrations)
    assert second.get_correction("cor-1") is not None
    assert [r.info.node_id for r in second.list_nodes()] == ["n1"]
    second.close()


def test_unknown_store_url_is_refused() -> None:
    with pytest.raises(InvalidInput, match="expected sqlite"):
        open_store("mysql://x")
