"""Witnessed heads catch the chain cut short or rewritten, which verifies on its own."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from backstop.core.models import AuditHead
from backstop.security.audit import AuditEntry, next_entry, verify
from backstop.security.audit_file import FileAuditLog
from backstop.security.witness import (
    Witness,
    verify_against_witnesses,
    verify_file_against_witnesses,
)


def _chain(count: int, start: list[AuditEntry] | None = None, tag: str = "") -> list[AuditEntry]:
    entries = list(start or [])
    while len(entries) < count:
        entries.append(
            next_entry(
                entries[-1] if entries else None,
                ts=1000.0 + len(entries),
                actor="alice",
                action="correction.create",
                subject=f"c-{len(entries)}{tag}",
                details={"n": len(entries)},
            )
        )
    return entries


def _head(entries: list[AuditEntry], seq: int) -> AuditHead:
    return AuditHead(seq, entries[seq - 1].hash)


def test_an_intact_chain_agrees_with_every_witness() -> None:
    chain = _chain(10)
    witnesses = [
        Witness("this CLI", _head(chain, 10)),
        Witness("node gpu-1", _head(chain, 4)),
        Witness("node gpu-2", AuditHead()),  # saw nothing yet: not a witness
    ]
    result = verify_against_witnesses(chain, witnesses)
    assert result.ok, result.problems
    assert result.checked == ("this CLI", "node gpu-1")
    # dicts, as exported, are held to the same witnesses
    assert verify_against_witnesses([e.to_dict() for e in chain], witnesses).ok


def test_dropping_the_last_entries_verifies_alone_but_not_against_a_witness() -> None:
    chain = _chain(10)
    trimmed = chain[:7]
    assert verify(trimmed).ok
    result = verify_against_witnesses(trimmed, [Witness("node gpu-1", _head(chain, 9))])
    assert not result.ok
    assert result.chain.ok
    (problem,) = result.problems
    assert problem.startswith("node gpu-1 saw entry 9")
    assert "the chain ends at entry 7" in problem
    assert "entries 8 to 9 (at least) were removed" in problem


def test_a_tail_rewritten_with_recomputed_hashes_differs_at_the_witnessed_entry() -> None:
    chain = _chain(10)
    rewritten = _chain(12, chain[:5], tag="-forged")
    assert verify(rewritten).ok
    witnesses = [Witness("this CLI", _head(chain, 8)), Witness("node a", _head(chain, 3))]
    result = verify_against_witnesses(rewritten, witnesses)
    assert not result.ok
    (problem,) = result.problems  # entry 3 is before the rewrite and still matches
    assert problem.startswith("this CLI saw entry 8")
    assert "the chain was rewritten at or before entry 8" in problem


def test_a_witness_beyond_a_broken_chain_is_reported_too() -> None:
    chain = _chain(6)
    chain[2] = dataclasses.replace(chain[2], actor="mallory")
    result = verify_against_witnesses(chain, [Witness("node b", _head(_chain(6), 5))])
    assert not result.chain.ok
    assert result.chain.count == 2
    (problem,) = result.problems
    assert "beyond the 2 entries that verify" in problem
    # an entry after the break is not vouched for, even with the witnessed hash
    result = verify_against_witnesses(chain, [Witness("node b", _head(chain, 5))])
    assert not result.ok
    assert result.problems


def test_a_trimmed_journal_file_fails_against_the_reported_head(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with FileAuditLog(path) as log:
        for i in range(5):
            log.append(actor="agent", action="command.applied", subject=f"c-{i}")
        last = log.last
    assert last is not None
    witness = [Witness("the controller's record of node n1", AuditHead(last.seq, last.hash))]
    assert verify_file_against_witnesses(path, witness).ok
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-2]))
    result = verify_file_against_witnesses(path, witness)
    assert result.chain.ok
    assert not result.ok
    assert "the controller's record of node n1 saw entry 5" in result.problems[0]
