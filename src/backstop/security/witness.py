"""Witnessed audit heads: catching a hash chain that was cut short or rewritten.

A chain that verifies proves only that it is internally consistent: whoever can write it can
drop its last entries, or rewrite its tail and recompute the hashes, and it still verifies.
Others therefore keep the heads (index and hash of the last entry) they have seen: the CLI
keeps the newest controller head it was given, each agent the newest head of the commands it
received, and the controller the journal head each agent reports. A witnessed head
``(seq, hash)`` holds a chain to two things: it is at least ``seq`` entries long, and its
entry ``seq`` has exactly that hash. :func:`verify_against_witnesses` checks both, after
verifying the chain itself; it is pure (no I/O), so every caller (CLI, tests) shares it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backstop.core.models import AuditHead
from backstop.security.audit import AuditEntry, VerifyResult, verify, verify_file


@dataclass(frozen=True, slots=True)
class Witness:
    """A head someone saw, and who: ``name`` is shown when the chain contradicts it."""

    name: str
    head: AuditHead


@dataclass(frozen=True, slots=True)
class WitnessResult:
    """The chain's own verification and its comparison with every witness."""

    chain: VerifyResult
    problems: tuple[str, ...]
    """One line per witness the chain contradicts, naming the witness."""
    checked: tuple[str, ...]
    """The witnesses compared (those with a non-empty head)."""

    @property
    def ok(self) -> bool:
        return self.chain.ok and not self.problems


def verify_against_witnesses(
    entries: Iterable[Mapping[str, Any] | AuditEntry], witnesses: Sequence[Witness]
) -> WitnessResult:
    """Verify a whole chain, then hold it to every witnessed head (see the module doc)."""
    seen = _Seen(witnesses)
    return _compare(verify(entries, on_good=seen.keep), seen.hashes, witnesses)


def verify_file_against_witnesses(path: Path, witnesses: Sequence[Witness]) -> WitnessResult:
    """:func:`verify_against_witnesses` for a JSON-lines log (an agent's journal)."""
    seen = _Seen(witnesses)
    return _compare(verify_file(path, on_good=seen.keep), seen.hashes, witnesses)


class _Seen:
    """The hashes of the verified entries at the witnessed indexes."""

    def __init__(self, witnesses: Sequence[Witness]) -> None:
        self._wanted = {w.head.seq for w in witnesses if not w.head.empty}
        self.hashes: dict[int, str] = {}

    def keep(self, entry: AuditEntry) -> None:
        if entry.seq in self._wanted:
            self.hashes[entry.seq] = entry.hash


def _compare(
    chain: VerifyResult, seen: Mapping[int, str], witnesses: Sequence[Witness]
) -> WitnessResult:
    problems: list[str] = []
    checked: list[str] = []
    for witness in witnesses:
        head = witness.head
        if head.empty:
            continue
        checked.append(witness.name)
        got = seen.get(head.seq)
        if got == head.hash:
            continue
        saw = f"{witness.name} saw entry {head.seq} with hash {head.hash[:16]}"
        if got is not None:
            problems.append(
                f"{saw}, but entry {head.seq} now has hash {got[:16]}: "
                f"the chain was rewritten at or before entry {head.seq}"
            )
        elif chain.ok:
            problems.append(
                f"{saw}, but the chain ends at entry {chain.count}: "
                f"entries {chain.count + 1} to {head.seq} (at least) were removed"
            )
        else:
            problems.append(
                f"{saw}, beyond the {chain.count} entries that verify: "
                "the chain was cut or changed before it"
            )
    return WitnessResult(chain=chain, problems=tuple(problems), checked=tuple(checked))
