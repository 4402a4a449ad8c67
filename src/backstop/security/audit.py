"""The tamper-evident audit log: a hash chain of decisions and actions, appended before acting.

Each entry is ``(seq, ts, actor, action, subject, details)`` plus ``prev_hash``, the hash of
the entry before it (64 zeros for the first), and its own ``hash``::

    hash = sha256(prev_hash + canonical_json(seq, ts, actor, action, subject, details))

where the canonical JSON has sorted keys, no whitespace and ASCII only, and ``ts`` is a float.
Changing, deleting, inserting or reordering any entry breaks the chain at that point, and
:func:`verify` says where. An attacker who cuts the tail off or rewrites it can rebuild a
valid chain; heads kept elsewhere (witnesses) catch that: see
:func:`backstop.security.witness.verify_against_witnesses`.

:func:`next_entry` builds an entry from the one before it and is pure, so any backend can keep
the chain (the controller keeps it in its database);
:class:`backstop.security.audit_file.FileAuditLog` keeps it as JSON lines in a file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from backstop.core.errors import InvalidInput

log = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
JOURNAL_FILE = "audit.jsonl"
"""An agent's journal, in its state directory (node agent and cloud agent alike)."""
"""``prev_hash`` of the first entry of every chain."""

ENTRY_FIELDS = frozenset(
    {"seq", "ts", "actor", "action", "subject", "details", "prev_hash", "hash"},
)
_HASH_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class AuditEntry:
    """One link of the chain. ``details`` holds JSON values only; do not mutate it."""

    seq: int
    """1 for the first entry, then +1 per entry."""
    ts: float
    """When it was recorded, seconds since the epoch."""
    actor: str
    """Who decided or acted: a person, ``controller``, ``agent:<node>``..."""
    action: str
    """What happened: ``correction.created``, ``correction.approved``, ``pause.applied``..."""
    subject: str
    """What it happened to: a correction id, a node id..."""
    details: Mapping[str, Any] = field(default_factory=dict)
    prev_hash: str = GENESIS_HASH
    hash: str = ""

    def computed_hash(self) -> str:
        """The hash this entry's content and ``prev_hash`` call for."""
        return entry_hash(
            self.prev_hash,
            seq=self.seq,
            ts=self.ts,
            actor=self.actor,
            action=self.action,
            subject=self.subject,
            details=self.details,
        )

    def to_dict(self) -> dict[str, Any]:
        """All fields, as one JSON line holds them."""
        return {
            "seq": self.seq,
            "ts": float(self.ts),
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "details": dict(self.details),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }

    def to_line(self) -> str:
        """The entry as one line of compact, sorted, ASCII JSON (without the newline)."""
        return _dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditEntry:
        """Parse an entry, checking field names and types (not the hash); ``InvalidInput``."""
        missing = sorted(ENTRY_FIELDS - set(data))
        if missing:
            raise InvalidInput(f"missing field(s) {', '.join(missing)}")
        unknown = sorted(set(data) - ENTRY_FIELDS)
        if unknown:
            raise InvalidInput(f"unknown field(s) {', '.join(map(repr, unknown))}")
        seq, ts = data["seq"], data["ts"]
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise InvalidInput(f"seq must be a positive integer, got {seq!r}")
        if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
            raise InvalidInput(f"ts must be a number, got {ts!r}")
        for name in ("actor", "action", "subject"):
            if not isinstance(data[name], str):
                raise InvalidInput(f"{name} must be a string")
        if not isinstance(data["details"], dict):
            raise InvalidInput("details must be an object")
        for name in ("prev_hash", "hash"):
            value = data[name]
            if not isinstance(value, str) or not _HASH_RE.fullmatch(value):
                raise InvalidInput(f"{name} must be 64 lowercase hex digits")
        return cls(
            seq=seq,
            ts=float(ts),
            actor=data["actor"],
            action=data["action"],
            subject=data["subject"],
            details=data["details"],
            prev_hash=data["prev_hash"],
            hash=data["hash"],
        )


def entry_hash(
    prev_hash: str,
    *,
    seq: int,
    ts: float,
    actor: str,
    action: str,
    subject: str,
    details: Mapping[str, Any],
) -> str:
    """sha256 over ``prev_hash`` and the canonical JSON of the entry's content, as hex."""
    content = {
        "seq": seq,
        "ts": float(ts),
        "actor": actor,
        "action": action,
        "subject": subject,
        "details": dict(details),
    }
    digest = hashlib.sha256(prev_hash.encode("ascii"))
    digest.update(_dumps(content).encode("ascii"))
    return digest.hexdigest()


def next_entry(
    prev: AuditEntry | None,
    *,
    ts: float,
    actor: str,
    action: str,
    subject: str,
    details: Mapping[str, Any],
) -> AuditEntry:
    """The entry that follows ``prev`` (or starts a chain when ``prev`` is ``None``).

    ``details`` is normalised through JSON (tuples become lists, keys strings), so the entry
    equals what a reader parses back. ``InvalidInput`` if it holds non-JSON values or NaN.
    """
    try:
        normal = json.loads(_dumps(dict(details)))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"audit details must be plain JSON values: {exc}") from exc
    if not math.isfinite(ts):
        raise InvalidInput(f"audit timestamp must be finite, got {ts!r}")
    seq = prev.seq + 1 if prev else 1
    prev_hash = prev.hash if prev else GENESIS_HASH
    entry = AuditEntry(
        seq=seq,
        ts=float(ts),
        actor=actor,
        action=action,
        subject=subject,
        details=normal,
        prev_hash=prev_hash,
    )
    return dataclasses.replace(entry, hash=entry.computed_hash())


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of :func:`verify`."""

    ok: bool
    count: int
    """Entries verified good, from the start up to the first bad one (all of them if ok)."""
    first_bad_seq: int | None = None
    """The first sequence number the chain cannot vouch for: the last good one plus one."""
    first_bad_line: int | None = None
    """1-based position (line) where the break was found."""
    reason: str = ""
    head_hash: str = GENESIS_HASH
    """Hash of the last good entry; compare with a copy kept elsewhere to catch a rewrite."""


class _Garbled:
    """A line that could not even be parsed as JSON."""

    def __init__(self, why: str) -> None:
        self.why = why


OnGood = Callable[[AuditEntry], None]
"""Called with each entry that verified good, in chain order."""


def verify(
    entries: Iterable[Mapping[str, Any] | AuditEntry], *, on_good: OnGood | None = None
) -> VerifyResult:
    """Check a whole chain from its first entry; stop at and point to the first bad one."""
    return _verify(entries, on_good)


def verify_file(path: Path, *, on_good: OnGood | None = None) -> VerifyResult:
    """Verify a JSON-lines audit log written by :class:`FileAuditLog` or :func:`export_jsonl`."""
    try:
        with path.open("rb") as fh:
            return _verify(_parse_lines(fh), on_good)
    except OSError as exc:
        raise InvalidInput(f"cannot read audit log {path}: {exc.strerror}") from exc


def read_entries(path: Path) -> Iterator[AuditEntry]:
    """The entries of a JSON-lines audit log, parsed (not verified); ``InvalidInput`` on a bad
    line. Use :func:`verify_file` to check the chain."""
    try:
        with path.open("rb") as fh:
            for line_no, item in enumerate(_parse_lines(fh), start=1):
                if isinstance(item, _Garbled):
                    raise InvalidInput(f"{path}: line {line_no}: {item.why}")
                try:
                    yield AuditEntry.from_dict(item)
                except InvalidInput as exc:
                    raise InvalidInput(f"{path}: line {line_no}: {exc.message}") from exc
    except OSError as exc:
        raise InvalidInput(f"cannot read audit log {path}: {exc.strerror}") from exc


def export_jsonl(entries: Iterable[AuditEntry], out: IO[str]) -> int:
    """Write entries as JSON lines (the file format, verifiable by :func:`verify_file`).

    Returns how many were written.
    """
    count = 0
    for entry in entries:
        out.write(entry.to_line() + "\n")
        count += 1
    out.flush()
    return count


def _parse_lines(fh: IO[bytes]) -> Iterator[Mapping[str, Any] | _Garbled]:
    for raw in fh:
        if not raw.endswith(b"\n"):
            yield _Garbled("the line is incomplete (no newline; a write was cut short)")
            return
        try:
            data = json.loads(raw.decode("utf-8"))
        except ValueError as exc:
            yield _Garbled(f"not valid JSON ({exc})")
            continue
        if not isinstance(data, dict):
            yield _Garbled("not a JSON object")
            continue
        yield data


def _verify(
    items: Iterable[Mapping[str, Any] | AuditEntry | _Garbled], on_good: OnGood | None
) -> VerifyResult:
    expected_seq = 1
    prev_hash = GENESIS_HASH
    count = 0

    def bad(line_no: int, reason: str) -> VerifyResult:
        return VerifyResult(
            ok=False,
            count=count,
            first_bad_seq=expected_seq,
            first_bad_line=line_no,
            reason=f"line {line_no}: {reason}",
            head_hash=prev_hash,
        )

    for line_no, item in enumerate(items, start=1):
        if isinstance(item, _Garbled):
            return bad(line_no, f"entry {expected_seq} is unreadable: {item.why}")
        if isinstance(item, AuditEntry):
            entry = item
        else:
            try:
                entry = AuditEntry.from_dict(item)
            except InvalidInput as exc:
                return bad(line_no, f"entry {expected_seq} is malformed: {exc.message}")
        problem = _link_problem(entry, expected_seq, prev_hash)
        if problem:
            return bad(line_no, problem)
        if on_good is not None:
            on_good(entry)
        prev_hash = entry.hash
        expected_seq += 1
        count += 1
    return VerifyResult(
        ok=True, count=count, reason=f"{count} entries verified", head_hash=prev_hash
    )


def _link_problem(entry: AuditEntry, expected_seq: int, prev_hash: str) -> str:
    """Why ``entry`` cannot follow a chain whose head has ``prev_hash`` ('' if it can)."""
    if entry.seq > expected_seq:
        return (
            f"entry {expected_seq} is missing; found entry {entry.seq} "
            "(entries deleted or reordered)"
        )
    if entry.seq < expected_seq:
        return (
            f"found entry {entry.seq} where entry {expected_seq} belongs "
            "(entries duplicated or reordered)"
        )
    if entry.prev_hash != prev_hash:
        before = f"entry {entry.seq - 1}" if entry.seq > 1 else "the genesis hash"
        return (
            f"entry {entry.seq} does not link to {before} (prev_hash differs): "
            "an entry was changed, inserted or deleted"
        )
    if entry.computed_hash() != entry.hash:
        return f"entry {entry.seq} was altered: its content does not match its hash"
    return ""


def _dumps(value: Any) -> str:
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
    )
