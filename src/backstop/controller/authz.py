"""Who is calling, and may they: identities from mTLS, roles from the trust policy.

Secure mode (a trust policy is configured): every control-API caller presents a client
certificate (CN = their name); their role comes from the trust policy. Open mode (plaintext
on loopback, no policy): every caller acts as an unauthenticated admin; the controller warns
at start. Open mode exists for the local demo and development, never for a network.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from backstop.core.errors import PermissionDenied
from backstop.security.identities import Role, TrustPolicy, TrustPolicyFile
from backstop.security.tls import peer_identity_from_context

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Caller:
    name: str
    role: Role
    authenticated: bool


class Refused(PermissionDenied):
    """A caller refused by who they are (``refusal``: the class the audit log counts by)."""

    def __init__(self, message: str, *, refusal: str) -> None:
        super().__init__(message)
        self.refusal = refusal


class Authorizer:
    def __init__(self, policy: TrustPolicyFile | None) -> None:
        self._policy = policy

    @property
    def secure(self) -> bool:
        return self._policy is not None

    def policy(self) -> TrustPolicy | None:
        return self._policy.current() if self._policy is not None else None

    def caller(self, context: Any, claimed_name: str = "") -> Caller:
        """The caller of an RPC. In open mode the claimed name is taken at its word."""
        policy = self.policy()
        if policy is None:
            return Caller(claimed_name or "anonymous", Role.ADMIN, authenticated=False)
        peer = peer_identity_from_context(context)
        if peer is None or peer.role != "client":
            raise Refused(
                "a client certificate is required (backstop pki issue --role client)",
                refusal="not_a_client_certificate",
            )
        person = policy.person(peer.name)
        if person is None:
            raise Refused(f"{peer.name} is not in the trust policy", refusal="not_in_policy")
        return Caller(person.name, person.role, authenticated=True)

    @staticmethod
    def require(caller: Caller, role: Role, what: str) -> None:
        if not caller.role.at_least(role):
            raise Refused(
                f"{caller.name} is a {caller.role.value}; {what} needs the {role.value} role",
                refusal="role",
            )
