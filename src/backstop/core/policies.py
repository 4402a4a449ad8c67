"""Policy versions as the controller keeps them: every change to a policy is a version.

Applying a policy file makes a new version holding the file's exact bytes; deleting a policy
makes a version holding a *deletion statement* (:func:`deletion_statement`: the name and the
digest of the version it ends), so a deletion is signed and approved like any change. A
version is ``proposed`` until its signatures reach the quorum it needs, then ``active``; the
version it replaces becomes ``superseded`` then. An active deletion leaves the policy gone.
A proposal is made against the version in force; when another change takes effect first, the
proposal is ``withdrawn`` (apply it again to propose it against what is in force now).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from backstop.core.models import SignatureRecord

DELETE = "delete"
"""The ``action`` of a version that deletes its policy."""

_STATEMENT = b"backstop.io/v1 policy deletion\n"


class PolicyState(enum.StrEnum):
    PROPOSED = "proposed"
    ACTIVE = "active"
    SUPERSEDED = "superseded"
    WITHDRAWN = "withdrawn"


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    """One version of a policy: the bytes applied (or the deletion statement) and its fate."""

    name: str
    version: int
    document: bytes
    """Exactly the bytes applied and signed; never re-serialised."""
    digest: str
    """SHA-256 of ``document``, hex."""
    action: str
    """The policy's action (``alert``, ``pause``...), or :data:`DELETE`."""
    state: PolicyState
    applied_by: str
    applied_s: float
    ended_s: float | None = None
    signatures: tuple[SignatureRecord, ...] = ()
    approval: str = ""
    """Where it stands on its quorum, e.g. ``"1 of 2 approvals"`` (set by the controller)."""

    @property
    def deletes(self) -> bool:
        return self.action == DELETE


def digest_of(document: bytes) -> str:
    return hashlib.sha256(document).hexdigest()


def deletion_statement(name: str, digest: str) -> bytes:
    """The bytes a deletion of policy ``name`` (whose active version has ``digest``) signs."""
    return _STATEMENT + f"name: {name}\ndigest: {digest}\n".encode()


def set_digest(digests: Iterable[str]) -> str:
    """One digest for a set of policy versions (their digests, in any order); ``""`` for none."""
    ordered = sorted(digests)
    return hashlib.sha256("\n".join(ordered).encode()).hexdigest() if ordered else ""
