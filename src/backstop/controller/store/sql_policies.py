"""Policy versions, as both SQL backends keep them (tables of migration 6).

Each change to a policy is a row of ``policies`` numbered after the policy's last one, holding
the exact document bytes; signatures are rows of ``policy_signatures``. A version that becomes
active supersedes the policy's active version and withdraws its other proposals (each was
made against the version in force then), in the same transaction, so a policy never has two
active versions.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from backstop.core.errors import Conflict, NotFound
from backstop.core.models import SignatureRecord
from backstop.core.policies import PolicyState, PolicyVersion

_Statement = tuple[str, Sequence[object]]
_COLUMNS = "name, version, document, digest, action, state, applied_by, applied_s, ended_s"
_SIGNATURE_INSERT = """INSERT INTO policy_signatures
        (name, version, key_id, signer, role, signature, signed_at_s)
    VALUES (?, ?, ?, ?, ?, ?, ?)"""


class SqlPolicies(ABC):
    """The policy half of the store over SQL."""

    @abstractmethod
    def _query(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
        """The rows one query returns."""

    @abstractmethod
    def _rewrite(
        self,
        query: str,
        args: Sequence[object],
        rewrite: Callable[[list[Any]], Sequence[_Statement]],
    ) -> None:
        """In one transaction: lock and read the rows ``query`` selects, then run the
        statements ``rewrite`` makes of them."""

    def add_policy_version(self, version: PolicyVersion) -> int:
        """Store ``version`` as its policy's next version (its ``version`` field is ignored);
        the number it got. Active, it supersedes the active version and withdraws the
        proposals."""
        numbered: list[int] = []

        def rewrite(rows: list[Any]) -> list[_Statement]:
            number = max((int(r[0]) for r in rows), default=0) + 1
            numbered.append(number)
            statements: list[_Statement] = [
                (
                    f"INSERT INTO policies ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",  # noqa: S608
                    (
                        version.name,
                        number,
                        version.document,
                        version.digest,
                        version.action,
                        version.state.value,
                        version.applied_by,
                        version.applied_s,
                    ),
                ),
                *(_signature_row(version.name, number, s) for s in version.signatures),
            ]
            if version.state == PolicyState.ACTIVE:
                statements += _settle(version.name, number, version.applied_s)
            return statements

        self._rewrite("SELECT version, state FROM policies WHERE name=?", (version.name,), rewrite)
        return numbered[0]

    def add_policy_signature(self, name: str, version: int, signature: SignatureRecord) -> None:
        """Add a signature to a proposed version (:class:`Conflict` when it is not proposed).
        A key signs a version once (the table's key refuses a second)."""

        def rewrite(rows: list[Any]) -> list[_Statement]:
            _require_proposed(rows, name, version)
            return [_signature_row(name, version, signature)]

        self._rewrite(
            "SELECT state FROM policies WHERE name=? AND version=?", (name, version), rewrite
        )

    def activate_policy_version(self, name: str, version: int, now_s: float) -> None:
        """Make a proposed version active (it supersedes the active one)."""

        def rewrite(rows: list[Any]) -> list[_Statement]:
            _require_proposed(rows, name, version)
            return [
                (
                    "UPDATE policies SET state=? WHERE name=? AND version=?",
                    (PolicyState.ACTIVE.value, name, version),
                ),
                *_settle(name, version, now_s),
            ]

        self._rewrite(
            "SELECT state FROM policies WHERE name=? AND version=?", (name, version), rewrite
        )

    def list_policy_versions(
        self, name: str = "", states: Sequence[PolicyState] = ()
    ) -> list[PolicyVersion]:
        """Versions of policy ``name`` (every policy when empty) in ``states`` (all when
        empty), by name then version, each with its signatures."""
        where, args = ["(?='' OR name=?)"], [name, name]
        if states:
            where.append(f"state IN ({', '.join('?' for _ in states)})")
            args += [s.value for s in states]
        rows = self._query(
            f"SELECT {_COLUMNS} FROM policies WHERE {' AND '.join(where)} "  # noqa: S608
            "ORDER BY name, version",
            args,
        )
        signed: dict[tuple[str, int], list[SignatureRecord]] = {}
        for n, v, key_id, signer, role, signature, at in self._query(
            """SELECT name, version, key_id, signer, role, signature, signed_at_s
               FROM policy_signatures WHERE (?='' OR name=?) ORDER BY signed_at_s, key_id""",
            (name, name),
        ):
            record = SignatureRecord(str(key_id), str(signer), str(role), bytes(signature), at)
            signed.setdefault((str(n), int(v)), []).append(record)
        return [
            PolicyVersion(
                name=str(n),
                version=int(v),
                document=bytes(doc),
                digest=str(digest),
                action=str(action),
                state=PolicyState(state),
                applied_by=str(by),
                applied_s=float(at),
                ended_s=None if ended is None else float(ended),
                signatures=tuple(signed.get((str(n), int(v)), ())),
            )
            for n, v, doc, digest, action, state, by, at, ended in rows
        ]


def _signature_row(name: str, version: int, s: SignatureRecord) -> _Statement:
    return (
        _SIGNATURE_INSERT,
        (name, version, s.key_id, s.signer, s.role, s.signature, s.signed_at_s),
    )


def _require_proposed(rows: list[Any], name: str, version: int) -> None:
    if not rows:
        raise NotFound(f"policy {name!r} has no version {version}; see `backstop policy list`")
    if rows[0][0] != PolicyState.PROPOSED.value:
        raise Conflict(f"policy {name!r} version {version} is {rows[0][0]}, not proposed")


def _settle(name: str, version: int, now_s: float) -> list[_Statement]:
    """What a version becoming active does to the others of its policy."""
    return [
        (
            "UPDATE policies SET state=?, ended_s=? WHERE name=? AND state=? AND version<>?",
            (PolicyState.SUPERSEDED.value, now_s, name, PolicyState.ACTIVE.value, version),
        ),
        (
            "UPDATE policies SET state=?, ended_s=? WHERE name=? AND state=? AND version<>?",
            (PolicyState.WITHDRAWN.value, now_s, name, PolicyState.PROPOSED.value, version),
        ),
    ]
