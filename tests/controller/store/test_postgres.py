"""What only the PostgreSQL store promises: several replicas on one database at once.

Each "replica" is a separate ``PostgresStore`` (its own connection pool) on the same database;
threads call them at the same moment (a barrier) with small pools, so calls also queue for
connections. The shared store suite (``test_store.py``) covers single-writer behaviour.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TypeVar, cast

import psycopg
import pytest

from backstop.controller.store.migrations import POSTGRES_MIGRATIONS as MIGRATIONS
from backstop.controller.store.postgres import PostgresStore
from backstop.controller.store.postgres_listener import Notification
from backstop.controller.store.sqlite import SqliteStore
from backstop.core.errors import InvalidInput, StoreError
from backstop.core.models import (
    CommandAck,
    CorrectionState,
    Report,
    TargetState,
    WorkloadOutcome,
)
from backstop.security.audit import verify
from tests.controller.conftest import node, spec
from tests.support.postgres import PostgresServer

T = TypeVar("T")
JOIN_TIMEOUT_S = 60.0


def run_together(calls: list[Callable[[], T]]) -> list[T]:
    """Run each call on its own thread, released at once; re-raise the first failure."""
    barrier = threading.Barrier(len(calls))
    results: list[T | None] = [None] * len(calls)
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            barrier.wait()
            results[index] = calls[index]()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT_S)
    assert not any(t.is_alive() for t in threads), "a worker thread hung"
    if errors:
        raise errors[0]
    return cast(list[T], results)


@pytest.fixture
def replicas(postgres_database: str) -> Iterator[tuple[PostgresStore, PostgresStore]]:
    """Two stores on one database, as two controller replicas, with two connections each."""
    first = PostgresStore(postgres_database, pool_size=2)
    second = PostgresStore(postgres_database, pool_size=2)
    yield first, second
    first.close()
    second.close()


def test_concurrent_audit_appends_from_two_replicas_keep_one_chain(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    per_thread, threads = 15, 8

    def appender(store: PostgresStore, worker: int) -> Callable[[], list[int]]:
        def append_all() -> list[int]:
            return [
                store.append_audit(
                    ts=1000.0 + i,
                    actor=f"replica-{worker % 2}",
                    action="test.append",
                    subject=f"w{worker}-{i}",
                    details={"worker": worker, "i": i, "nested": {"b": [1, 2], "a": None}},
                ).seq
                for i in range(per_thread)
            ]

        return append_all

    seqs = run_together([appender(replicas[i % 2], i) for i in range(threads)])
    total = per_thread * threads
    assert sorted(s for chunk in seqs for s in chunk) == list(range(1, total + 1))
    entries = replicas[1].list_audit()
    result = verify(entries)
    assert result.ok, result.reason
    assert result.count == total
    assert entries == replicas[0].list_audit()
    assert [e.seq for e in replicas[0].list_audit(after_seq=total - 3, limit=2)] == [
        total - 2,
        total - 1,
    ]


def test_audit_hashes_match_the_sqlite_store(postgres_database: str, tmp_path: Path) -> None:
    pg = PostgresStore(postgres_database)
    lite = SqliteStore(str(tmp_path / "audit.db"))
    try:
        for store in (pg, lite):
            store.append_audit(ts=1.5, actor="alice", action="a", subject="s", details={})
            store.append_audit(
                ts=2.25,
                actor="bob",
                action="correction.created",
                subject="cor-1",
                details={"z": 1, "a": ["x", 1.5, True, None], "unicode": "\u00e9\u2603"},
            )
        assert pg.list_audit() == lite.list_audit()
        assert verify(pg.list_audit()).head_hash == verify(lite.list_audit()).head_hash
    finally:
        pg.close()
        lite.close()


def test_concurrent_add_target_for_one_node_gets_distinct_gapless_sequences(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    count = 24
    for i in range(count):
        replicas[0].create_correction(spec(f"cor-{i}"), CorrectionState.APPROVED, 1.0)

    def target(i: int) -> Callable[[], int]:
        return lambda: replicas[i % 2].add_target(f"cor-{i}", "n1", TargetState.PENDING, 2.0)

    sequences = run_together([target(i) for i in range(count)])
    assert sorted(sequences) == list(range(1, count + 1))
    stored = {
        c.spec.correction_id: c.targets[0].sequence for c in replicas[1].list_corrections(count)
    }
    assert sorted(stored.values()) == list(range(1, count + 1))
    assert all(stored[f"cor-{i}"] == sequences[i] for i in range(count))
    # Another node's counter is its own.
    assert replicas[1].add_target("cor-0", "n2", TargetState.PENDING, 3.0) == 1


def test_a_failed_add_target_leaves_no_gap(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    store = replicas[0]
    store.create_correction(spec("cor-1"), CorrectionState.APPROVED, 1.0)
    store.create_correction(spec("cor-2"), CorrectionState.APPROVED, 1.0)
    assert store.add_target("cor-1", "n1", TargetState.PENDING, 2.0) == 1
    with pytest.raises(StoreError):  # same target twice: the insert fails after the bump
        store.add_target("cor-1", "n1", TargetState.PENDING, 2.0)
    with pytest.raises(StoreError):  # unknown correction: the foreign key refuses it
        replicas[1].add_target("cor-404", "n1", TargetState.PENDING, 2.0)
    assert replicas[1].add_target("cor-2", "n1", TargetState.PENDING, 2.0) == 2


def test_batched_targets_to_overlapping_nodes_from_two_replicas(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    nodes = [f"n{i:02d}" for i in range(12)]
    for i in range(8):
        replicas[0].create_correction(spec(f"cor-{i}"), CorrectionState.APPROVED, 1.0)

    def dispatch(i: int) -> Callable[[], dict[str, int]]:
        # Overlapping node sets, in different orders: locks are still taken in one order.
        chosen = nodes[i % 3 :] if i % 2 else list(reversed(nodes[: 12 - i % 4]))
        plan = [(n, TargetState.DISPATCHED, "") for n in chosen]
        return lambda: replicas[i % 2].add_targets(f"cor-{i}", plan, 2.0)

    results = run_together([dispatch(i) for i in range(8)])
    for n in nodes:
        got = sorted(r[n] for r in results if n in r)
        assert got == list(range(1, len(got) + 1)), n
    cor = replicas[1].get_correction("cor-3")
    assert cor is not None
    assert {t.node_id: t.sequence for t in cor.targets} == results[3]
    assert replicas[0].add_targets("cor-0", [], 3.0) == {}


def test_acks_and_audit_appends_from_two_replicas_keep_one_chain(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    nodes = [f"n{i}" for i in range(10)]
    replicas[0].create_correction(spec("cor-1"), CorrectionState.APPROVED, 1.0)
    sequences = replicas[0].add_targets(
        "cor-1", [(n, TargetState.DISPATCHED, "") for n in nodes], 1.0
    )
    outcome = (WorkloadOutcome("wl", (1,), "applied"),)

    def acks_for(half: list[str], store: PostgresStore) -> Callable[[], int]:
        batch = [
            (n, CommandAck("cor-1", sequences[n], TargetState.APPLIED, "ok", outcome)) for n in half
        ]
        # each batch twice, and once more later: only the first changes anything
        return lambda: (
            len(store.record_acks(batch + batch, 2.0)) + len(store.record_acks(batch, 3.0))
        )

    def audits(store: PostgresStore) -> Callable[[], int]:
        return lambda: len(
            [
                store.append_audit(ts=2.5, actor="op", action="x", subject=str(i), details={})
                for i in range(10)
            ]
        )

    counts = run_together(
        [
            acks_for(nodes[:5], replicas[0]),
            acks_for(nodes[5:], replicas[1]),
            audits(replicas[0]),
            audits(replicas[1]),
        ]
    )
    assert counts == [5, 5, 10, 10]
    entries = replicas[0].list_audit()
    result = verify(entries)
    assert result.ok, result.reason
    assert result.count == 30
    assert sorted(e.actor for e in entries if e.action == "command.ack") == nodes
    assert replicas[1].target_states("cor-1") == dict.fromkeys(nodes, TargetState.APPLIED)
    target = replicas[1].get_target("cor-1", "n3")
    assert target is not None
    assert (target.state, target.message, target.outcomes) == (TargetState.APPLIED, "ok", outcome)


def test_acks_match_the_sqlite_store(postgres_database: str, tmp_path: Path) -> None:
    pg = PostgresStore(postgres_database)
    lite = SqliteStore(str(tmp_path / "acks.db"))
    try:
        results = []
        for store in (pg, lite):
            store.create_correction(spec("cor-1"), CorrectionState.APPROVED, 1.0)
            seqs = store.add_targets(
                "cor-1",
                [("b", TargetState.DISPATCHED, ""), ("a", TargetState.UNREACHABLE, "away")],
                1.0,
            )
            acks = [
                ("a", CommandAck("cor-1", seqs["a"], TargetState.FAILED, "no cgroup")),
                ("ghost", CommandAck("cor-1", 9, TargetState.APPLIED)),
                ("b", CommandAck("cor-1", seqs["b"], TargetState.APPLIED, "ok")),
                ("a", CommandAck("cor-1", seqs["a"], TargetState.FAILED, "no cgroup")),
                ("a", CommandAck("cor-1", seqs["a"], TargetState.APPLIED, "retried")),
                ("b", CommandAck("cor-9", seqs["b"], TargetState.APPLIED)),
            ]
            results.append(
                (
                    seqs,
                    store.record_acks(acks, 2.0),
                    store.target_states("cor-1"),
                    store.get_target("cor-1", "a"),
                    store.get_target("cor-1", "ghost"),
                    store.list_audit(),
                )
            )
        assert results[0] == results[1]
        # a's failure is final: the later "retried" applied ack is ignored (and audited)
        assert [n for n, _ in results[0][1]] == ["a", "b"]
        assert [e.action for e in results[0][5]] == ["command.ack", "command.ack", "ack.ignored"]
    finally:
        pg.close()
        lite.close()


def test_replicas_starting_together_apply_each_migration_once(postgres_database: str) -> None:
    stores = run_together([lambda: PostgresStore(postgres_database, pool_size=1)] * 6)
    try:
        assert {s.schema_version() for s in stores} == {len(MIGRATIONS)}
        with psycopg.connect(postgres_database) as conn:
            versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
        assert sorted(versions) == list(range(1, len(MIGRATIONS) + 1))
        stores[0].upsert_node(node("n1"), 1.0)
        assert [r.info.node_id for r in stores[5].list_nodes()] == ["n1"]
    finally:
        for store in stores:
            store.close()


def test_an_enrolment_token_is_spent_once_across_replicas(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    replicas[0].add_enrolment_token("tok", "n1", 1.0, 100.0)
    spent = run_together(
        [partial(replicas[i % 2].use_enrolment_token, "tok", "n1", 2.0) for i in range(8)]
    )
    assert sorted(spent) == [False] * 7 + [True]


def test_a_report_delivered_to_two_replicas_is_stored_once(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    replicas[0].upsert_node(node("n1"), 1.0)
    report = Report("n1", 7, 5.0, node("n1").gpus)
    stored = run_together([partial(replicas[i % 2].record_report, report, 5.0) for i in range(6)])
    assert sorted(stored) == [False] * 5 + [True]
    assert replicas[1].count_samples() == 1
    assert replicas[1].last_report_sequence("n1") == 7


def test_notify_from_one_replica_reaches_another_replicas_listener(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    sender, receiver = replicas
    with receiver.listen("backstop_commands", "Other-Channel") as listener:
        sender.notify("backstop_commands", "n1:1")
        sender.notify("backstop_commands", "n1:2")
        sender.notify("Other-Channel", "")
        got = [listener.get(timeout_s=10.0) for _ in range(3)]
        assert [(n.channel, n.payload) for n in got if n] == [
            ("backstop_commands", "n1:1"),
            ("backstop_commands", "n1:2"),
            ("Other-Channel", ""),
        ]
        assert got[0] is not None
        assert got[0].sender_pid > 0
        assert listener.get(timeout_s=0.05) is None  # nothing else is queued


def test_a_listener_only_hears_its_channels_and_stops_when_closed(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    sender, receiver = replicas
    listener = receiver.listen("wanted", wake_s=0.05)
    heard: list[Notification] = []
    heard_two = threading.Event()

    def consume() -> None:
        for note in listener:
            heard.append(note)
            if len(heard) == 2:
                heard_two.set()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    try:
        sender.notify("unwanted", "x")
        sender.notify("wanted", "y")
        with receiver.listen("wanted") as probe:  # a second listener hears the same one
            sender.notify("wanted", "z")
            note = probe.get(timeout_s=10.0)
            assert note is not None
            assert (note.channel, note.payload) == ("wanted", "z")
        assert heard_two.wait(10.0)
    finally:
        listener.close()
        thread.join(JOIN_TIMEOUT_S)
    assert not thread.is_alive()
    assert listener.closed
    assert [n.payload for n in heard] == ["y", "z"]
    assert listener.get(timeout_s=0.01) is None


def test_notify_refuses_bad_channels_and_oversized_payloads(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    with pytest.raises(InvalidInput):
        replicas[0].notify("", "x")
    with pytest.raises(InvalidInput):
        replicas[0].notify("c" * 64, "x")
    with pytest.raises(InvalidInput):
        replicas[0].notify("ok", "x" * 8000)
    with pytest.raises(InvalidInput):
        replicas[0].listen()


def test_a_dropped_connection_is_a_temporary_error_and_the_next_call_reconnects(
    postgres_database: str,
) -> None:
    store = PostgresStore(postgres_database, pool_size=1)
    try:
        store.upsert_node(node("n1"), 1.0)
        with psycopg.connect(postgres_database, autocommit=True) as admin:
            ended = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND application_name = 'backstop-controller'"
            ).fetchall()
        assert ended == [(True,)]
        with pytest.raises(StoreError) as caught:
            store.list_nodes()
        assert caught.value.temporary
        assert [r.info.node_id for r in store.list_nodes()] == ["n1"]
    finally:
        store.close()


def test_a_closed_store_refuses_calls(postgres_database: str) -> None:
    store = PostgresStore(postgres_database)
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.list_nodes()


def test_an_unreachable_server_is_a_store_error(postgres_server: PostgresServer) -> None:
    with pytest.raises(StoreError, match="cannot connect"):
        PostgresStore(postgres_server.dsn("no_such_database"))
