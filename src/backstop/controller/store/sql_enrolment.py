"""Enrolment tokens, issued certificates and revocations, as both SQL backends keep them.

:class:`SqlEnrolment` owns the store methods behind enrolling a node (a token issued, then
spent once) and revoking one (its certificates refused from then on). Each is one query or one
transaction on the ``_query`` and ``_write`` a backend supplies, written with ``?``
placeholders; :class:`~backstop.controller.store.sql_store.SqlStore` builds on it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any


class SqlEnrolment(ABC):
    """The enrolment and revocation half of the store over SQL."""

    @abstractmethod
    def _query(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
        """The rows one query returns."""

    @abstractmethod
    def _write(self, *statements: tuple[str, Sequence[object]]) -> list[int]:
        """Run the (query, arguments) statements in one transaction; each one's row count."""

    def add_enrolment_token(
        self, token_hash: str, node_id: str, now_s: float, expires_at_s: float
    ) -> None:
        self._write(
            (
                "INSERT INTO enrolment_tokens (token_hash, node_id, created_at_s, expires_at_s) "
                "VALUES (?, ?, ?, ?)",
                (token_hash, node_id, now_s, expires_at_s),
            )
        )

    def use_enrolment_token(self, token_hash: str, node_id: str, now_s: float) -> bool:
        """Spend a token: True once for an unexpired token issued for this node."""
        (spent,) = self._write(
            (
                "UPDATE enrolment_tokens SET used_at_s=? WHERE token_hash=? AND node_id=? "
                "AND used_at_s IS NULL AND expires_at_s > ?",
                (now_s, token_hash, node_id, now_s),
            )
        )
        return spent == 1

    def record_certificate(
        self, serial: str, node_id: str, issued_at_s: float, not_after_s: float
    ) -> None:
        self._write(
            (
                "INSERT INTO certificates (serial, node_id, issued_at_s, not_after_s) "
                "VALUES (?, ?, ?, ?)",
                (serial, node_id, issued_at_s, not_after_s),
            )
        )

    def certificate_issued_at(self, serial: str) -> float | None:
        rows = self._query("SELECT issued_at_s FROM certificates WHERE serial=?", (serial,))
        return float(rows[0][0]) if rows else None

    def revoke_node(self, node_id: str, now_s: float, reason: str) -> int:
        """Refuse the node's certificates issued until now; returns how many known ones."""
        _, revoked = self._write(
            (
                "INSERT INTO revocations (node_id, revoked_at_s, reason) VALUES (?, ?, ?) "
                "ON CONFLICT (node_id) DO UPDATE SET revoked_at_s=excluded.revoked_at_s, "
                "reason=excluded.reason",
                (node_id, now_s, reason),
            ),
            (
                "UPDATE certificates SET revoked_at_s=? WHERE node_id=? AND revoked_at_s IS NULL",
                (now_s, node_id),
            ),
        )
        return revoked

    def revoked_before(self, node_id: str) -> float | None:
        """Certificates of this node issued at or before the returned time are revoked."""
        rows = self._query("SELECT revoked_at_s FROM revocations WHERE node_id=?", (node_id,))
        return float(rows[0][0]) if rows else None
