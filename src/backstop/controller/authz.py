"""Who is calling, and may they: identities from mTLS, roles from the trust policy.

Secure mode (a trust policy is configured): every control-API caller presents a client
certificate (CN = their name); their role comes from the trust policy. Open mode (plaintext
on loopback, no policy): every caller acts as an unauthenticated admin; the controller warns
at start. Open mode exists for the local demo and development, never for a network.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backstop.core.errors import PermissionDenied
from backstop.security.crl import RevocationList, revoke
from backstop.security.identities import Role, TrustPolicy, TrustPolicyFile
from backstop.security.issued import issued_to
from backstop.security.peers import PeerIdentity, PeerRole
from backstop.security.pki import CA_KEY_FILE, CertificateAuthority
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
    def __init__(
        self,
        policy: TrustPolicyFile | None,
        revocations: RevocationList | None = None,
        ca_dir: Path | None = None,
    ) -> None:
        self._policy = policy
        self.revocations = revocations
        """The CA's revocation list, checked for every client certificate (people and nodes)."""
        self._ca_dir = ca_dir

    def revoke_certificates(self, name: str, role: PeerRole) -> int | None:
        """Put every certificate the CA issued to ``name`` (as ``role``) on the revocation list.

        Only where this controller holds the CA key (it signs enrolments): the serials come from
        the CA's ledger beside the key. Returns how many serials were added, or ``None`` when
        this controller holds no CA key (revoke where the key is: ``backstop pki revoke --dir``).
        """
        if self._ca_dir is None or self.revocations is None:
            return None
        if not (self._ca_dir / CA_KEY_FILE).is_file():
            return None
        ca = CertificateAuthority.load(self._ca_dir)
        serials = [c.serial for c in issued_to(self._ca_dir, name, role)]
        result = revoke(ca, self.revocations.path, serials)
        return len(result.added)

    def revocation_problem(self, peer: PeerIdentity) -> str:
        """Why ``peer``'s certificate is refused by the CA's revocation list ("" if it is not)."""
        if self.revocations is None or not self.revocations.is_revoked(peer.serial):
            return ""
        return (
            f"certificate {peer.serial[:16]} of {peer.name} is on the CA's revocation list "
            f"({self.revocations.path.name})"
        )

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
        revoked = self.revocation_problem(peer)
        if revoked:
            raise Refused(revoked, refusal="revoked")
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
