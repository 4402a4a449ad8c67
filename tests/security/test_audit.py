"""The audit hash chain: building it, keeping it in a file, and catching every kind of damage."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from backstop.core.errors import Conflict, InvalidInput
from backstop.security.audit import (
    GENESIS_HASH,
    AuditEntry,
    export_jsonl,
    next_entry,
    verify,
    verify_file,
)
from backstop.security.audit_file import FileAuditLog

CHAIN_LENGTH = 50


def _fill(path: Path, count: int, start: int = 1) -> None:
    with FileAuditLog(path) as log:
        for n in range(start, start + count):
            log.append(
                actor="alice" if n % 2 else "controller",
                action="correction.created" if n % 2 else "correction.dispatched",
                subject=f"cor-{n}",
                details={"note": f"entry {n} ok", "nodes": ["n1", "n2"], "n": n},
                ts=1_700_000_000.0 + n,
            )


@pytest.fixture(scope="module")
def chain_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audit") / "template.jsonl"
    _fill(path, CHAIN_LENGTH)
    return path


@pytest.fixture
def chain(chain_template: Path, tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    shutil.copyfile(chain_template, path)
    return path


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


# -- building the chain -------------------------------------------------------------------


def test_hash_is_sha256_of_prev_hash_and_canonical_content() -> None:
    first = next_entry(
        None, ts=10, actor="alice", action="a", subject="s", details={"z": 1, "é": "ü"}
    )
    assert first.seq == 1
    assert first.prev_hash == GENESIS_HASH == "0" * 64
    assert first.ts == 10.0
    canonical = (
        '{"action":"a","actor":"alice","details":{"z":1,"\\u00e9":"\\u00fc"},'
        '"seq":1,"subject":"s","ts":10.0}'
    )
    assert first.hash == hashlib.sha256((GENESIS_HASH + canonical).encode()).hexdigest()

    second = next_entry(first, ts=11.5, actor="bob", action="b", subject="s", details={})
    assert second.seq == 2
    assert second.prev_hash == first.hash
    assert second.hash == second.computed_hash() != first.hash


def test_details_are_normalised_to_what_a_reader_parses_back() -> None:
    entry = next_entry(None, ts=1.0, actor="a", action="b", subject="c", details={"t": (1, 2)})
    assert entry.details == {"t": [1, 2]}
    parsed = AuditEntry.from_dict(json.loads(entry.to_line()))
    assert parsed == entry
    with pytest.raises(InvalidInput, match="plain JSON values"):
        next_entry(None, ts=1.0, actor="a", action="b", subject="c", details={"x": object()})
    with pytest.raises(InvalidInput, match="plain JSON values"):
        next_entry(None, ts=1.0, actor="a", action="b", subject="c", details={"x": float("nan")})


def test_chain_kept_elsewhere_verifies_from_entries_and_dicts() -> None:
    entries: list[AuditEntry] = []
    for n in range(5):
        entries.append(
            next_entry(
                entries[-1] if entries else None,
                ts=n,  # an integer timestamp, as a database column might hand back
                actor="controller",
                action="tick",
                subject=str(n),
                details={},
            ),
        )
    mixed: list[AuditEntry | dict[str, object]] = [e if e.seq % 2 else e.to_dict() for e in entries]
    result = verify(mixed)
    assert result.ok
    assert result.count == 5
    assert result.head_hash == entries[-1].hash
    assert verify([]).ok


# -- the file -----------------------------------------------------------------------------


def test_chain_of_fifty_verifies(chain: Path) -> None:
    result = verify_file(chain)
    assert result.ok, result.reason
    assert result.count == CHAIN_LENGTH
    assert result.first_bad_seq is None
    last = json.loads(_lines(chain)[-1])
    assert result.head_hash == last["hash"]


def test_appends_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _fill(path, 3)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with FileAuditLog(path) as log:
        assert log.last is not None
        assert log.last.seq == 3
        entry = log.append(actor="bob", action="correction.approved", subject="cor-3")
        assert entry.seq == 4
        assert entry.prev_hash == json.loads(_lines(path)[2])["hash"]
    _fill(path, 2, start=5)
    result = verify_file(path)
    assert result.ok, result.reason
    assert result.count == 6
    assert [e.seq for e in FileAuditLog(path).entries()] == [1, 2, 3, 4, 5, 6]


def test_append_fsyncs_the_line_before_returning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    log = FileAuditLog(path)
    seen: list[bytes] = []
    real_fsync: Callable[[int], None] = os.fsync

    def spy(fd: int) -> None:
        if os.path.samestat(os.fstat(fd), path.stat()):
            seen.append(path.read_bytes())
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    try:
        log.append(actor="alice", action="pause.requested", subject="cor-1")
        assert len(seen) == 1
        assert json.loads(seen[0])["action"] == "pause.requested"
        assert seen[0].count(b"\n") == 1  # the whole line was written when fsync ran
        log.append(actor="alice", action="pause.applied", subject="cor-1")
        assert len(seen) == 2
        assert seen[1].count(b"\n") == 2
    finally:
        log.close()


def test_concurrent_appends_form_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with FileAuditLog(path) as log:

        def worker(name: str) -> None:
            for n in range(10):
                log.append(actor=name, action="tick", subject=str(n))

        threads = [threading.Thread(target=worker, args=(f"t{i}",)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    result = verify_file(path)
    assert result.ok, result.reason
    assert result.count == 40


def test_second_writer_is_refused(chain: Path) -> None:
    with FileAuditLog(chain), pytest.raises(Conflict, match="already open for writing"):
        FileAuditLog(chain)
    FileAuditLog(chain).close()  # free again once the first one closed


def test_closed_log_refuses_appends(tmp_path: Path) -> None:
    log = FileAuditLog(tmp_path / "audit.jsonl")
    log.close()
    with pytest.raises(Conflict, match="is closed"):
        log.append(actor="a", action="b", subject="c")


def test_reopen_refuses_a_truncated_last_line(chain: Path) -> None:
    lines = _lines(chain)
    _write_lines(chain, [*lines[:-1], lines[-1][: len(lines[-1]) // 2]])
    with pytest.raises(Conflict, match=r"last line is incomplete.*backstop audit verify"):
        FileAuditLog(chain)
    assert _lines(chain)[-1] == lines[-1][: len(lines[-1]) // 2]  # left as found


def test_reopen_refuses_a_last_entry_that_fails_its_hash(chain: Path) -> None:
    lines = _lines(chain)
    _write_lines(chain, [*lines[:-1], lines[-1].replace(b"entry 50 ok", b"entry 50 OK")])
    with pytest.raises(Conflict, match=r"last entry \(seq 50\) does not match its hash"):
        FileAuditLog(chain)
    _write_lines(chain, [*lines[:-1], b"{not json}\n"])
    with pytest.raises(Conflict, match="last line is not a valid entry"):
        FileAuditLog(chain)


def test_reopen_reads_a_last_line_longer_than_one_block(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with FileAuditLog(path) as log:
        log.append(actor="a", action="b", subject="c")
        log.append(actor="a", action="b", subject="c", details={"blob": "x" * 150_000})
    with FileAuditLog(path) as log:
        assert log.last is not None
        assert log.last.seq == 2
        log.append(actor="a", action="b", subject="c")
    assert verify_file(path).count == 3


# -- damage is found, and where -----------------------------------------------------------


def test_changed_byte_in_details_is_detected(chain: Path) -> None:
    lines = _lines(chain)
    assert b"entry 20 ok" in lines[19]
    lines[19] = lines[19].replace(b"entry 20 ok", b"entry 20 ox")
    _write_lines(chain, lines)
    result = verify_file(chain)
    assert not result.ok
    assert (result.first_bad_seq, result.first_bad_line, result.count) == (20, 20, 19)
    assert result.reason == "line 20: entry 20 was altered: its content does not match its hash"
    assert result.head_hash == json.loads(lines[18])["hash"]


def test_deleted_line_is_detected(chain: Path) -> None:
    lines = _lines(chain)
    del lines[29]
    _write_lines(chain, lines)
    result = verify_file(chain)
    assert not result.ok
    assert (result.first_bad_seq, result.first_bad_line) == (30, 30)
    assert result.reason == (
        "line 30: entry 30 is missing; found entry 31 (entries deleted or reordered)"
    )


def test_deleted_last_line_is_not_detectable_without_the_head_hash(chain: Path) -> None:
    before = verify_file(chain)
    _write_lines(chain, _lines(chain)[:-1])
    after = verify_file(chain)
    assert after.ok
    assert after.count == CHAIN_LENGTH - 1
    assert after.head_hash != before.head_hash  # a copy of the head hash catches it


def test_swapped_lines_are_detected(chain: Path) -> None:
    lines = _lines(chain)
    lines[9], lines[10] = lines[10], lines[9]
    _write_lines(chain, lines)
    result = verify_file(chain)
    assert not result.ok
    assert (result.first_bad_seq, result.first_bad_line) == (10, 10)
    assert "entry 10 is missing; found entry 11" in result.reason


def test_truncated_last_line_is_detected(chain: Path) -> None:
    lines = _lines(chain)
    _write_lines(chain, [*lines[:-1], lines[-1][:40]])
    result = verify_file(chain)
    assert not result.ok
    assert (result.first_bad_seq, result.first_bad_line, result.count) == (50, 50, 49)
    assert result.reason == (
        "line 50: entry 50 is unreadable: the line is incomplete "
        "(no newline; a write was cut short)"
    )


def test_last_line_missing_only_its_newline_is_detected(chain: Path) -> None:
    chain.write_bytes(chain.read_bytes()[:-1])
    result = verify_file(chain)
    assert (result.ok, result.first_bad_seq) == (False, 50)


def test_garbled_line_in_the_middle_is_detected(chain: Path) -> None:
    lines = _lines(chain)
    lines[4] = b"\x00\x00garbage\n"
    _write_lines(chain, lines)
    result = verify_file(chain)
    assert (result.ok, result.first_bad_seq, result.first_bad_line) == (False, 5, 5)
    assert "entry 5 is unreadable: not valid JSON" in result.reason


def test_duplicated_line_is_detected(chain: Path) -> None:
    lines = _lines(chain)
    lines.insert(7, lines[6])
    _write_lines(chain, lines)
    result = verify_file(chain)
    assert (result.ok, result.first_bad_seq, result.first_bad_line) == (False, 8, 8)
    assert "found entry 7 where entry 8 belongs" in result.reason


def test_edit_with_recomputed_hash_breaks_the_next_link(chain: Path) -> None:
    lines = _lines(chain)
    data = json.loads(lines[11])
    data["actor"] = "mallory"
    forged = AuditEntry.from_dict(data)
    data["hash"] = forged.computed_hash()
    lines[11] = (AuditEntry.from_dict(data).to_line() + "\n").encode()
    _write_lines(chain, lines)
    result = verify_file(chain)
    assert (result.ok, result.first_bad_seq, result.first_bad_line) == (False, 13, 13)
    assert "entry 13 does not link to entry 12 (prev_hash differs)" in result.reason


def test_field_added_outside_the_hash_is_detected(chain: Path) -> None:
    lines = _lines(chain)
    data = json.loads(lines[2])
    data["approved_by"] = "ceo"
    lines[2] = (json.dumps(data) + "\n").encode()
    _write_lines(chain, lines)
    result = verify_file(chain)
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert "entry 3 is malformed: unknown field(s) 'approved_by'" in result.reason


def test_first_entry_must_start_from_genesis() -> None:
    first = next_entry(None, ts=1.0, actor="a", action="b", subject="c", details={})
    rebased = AuditEntry(**{**first.to_dict(), "prev_hash": "1" * 64})
    rebased = AuditEntry(**{**rebased.to_dict(), "hash": rebased.computed_hash()})
    result = verify([rebased])
    assert (result.ok, result.first_bad_seq) == (False, 1)
    assert "does not link to the genesis hash" in result.reason


def test_export_writes_a_verifiable_copy(chain: Path) -> None:
    out = io.StringIO()
    with FileAuditLog(chain) as log:
        written = export_jsonl(log.entries(), out)
    assert written == CHAIN_LENGTH
    assert out.getvalue().encode() == chain.read_bytes()
    copy = chain.with_name("copy.jsonl")
    copy.write_text(out.getvalue())
    assert verify_file(copy).ok


def test_verify_file_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot read audit log"):
        verify_file(tmp_path / "absent.jsonl")
