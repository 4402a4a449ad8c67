"""Who a certificate names, and enrolment tokens: what a server needs of the PKI at runtime.

A certificate names its holder in the subject (``CN`` = name, ``OU`` = role), so a server reads
who is calling from the verified TLS handshake alone (:func:`peer_identity`). Enrolment tokens
are bearer secrets shown once to an operator; only their SHA-256 is stored. Issuing and
signing live in :mod:`backstop.security.pki`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal, cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from backstop.core.errors import InvalidInput

PeerRole = Literal["controller", "agent", "client"]
"""What a certificate's holder is (not an operator's role); carried in the subject's ``OU``."""

PEER_ROLES: Final[frozenset[str]] = frozenset({"controller", "agent", "client"})
"""Every valid :data:`PeerRole`."""

TOKEN_PREFIX: Final = "bst_"  # noqa: S105 (a public marker, not a secret)
"""Prefix of every enrolment token, so a leaked one is easy to recognise and grep for."""


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """Who a certificate names, as read from an already verified certificate."""

    name: str
    """The subject's common name: node name, replica name or operator name."""
    role: PeerRole
    """The subject's organisational unit."""
    serial: str
    """The certificate serial number, lowercase hexadecimal without ``0x``."""
    fingerprint_sha256: str
    """SHA-256 of the certificate's DER encoding, lowercase hexadecimal."""
    not_after: datetime
    """End of validity (timezone-aware, UTC)."""


def peer_identity(cert_pem: bytes | str) -> PeerIdentity:
    """Read who a certificate names (CN, OU), its serial, fingerprint and end of validity.

    This does not verify the certificate: call it on certificates the TLS handshake (or the
    caller) has already verified against the CA. :class:`InvalidInput` when the certificate
    does not carry exactly one common name and one known role.
    """
    raw = cert_pem.encode("ascii") if isinstance(cert_pem, str) else cert_pem
    certificate = load_certificate(raw, "peer certificate")
    name = single_attribute(certificate.subject, NameOID.COMMON_NAME)
    role = single_attribute(certificate.subject, NameOID.ORGANIZATIONAL_UNIT_NAME)
    if not name:
        raise InvalidInput("peer certificate has no single common name")
    if role not in PEER_ROLES:
        raise InvalidInput(f"peer certificate has no known role (OU={role!r})")
    facts = _facts(certificate)
    return PeerIdentity(
        name=name,
        role=cast(PeerRole, role),
        serial=facts.serial,
        fingerprint_sha256=facts.fingerprint_sha256,
        not_after=facts.not_after,
    )


def new_enrolment_token() -> tuple[str, str]:
    """A fresh enrolment token and its hash: ``(token, token_hash)``.

    The token is 32 random bytes, URL-safe base64 without padding, prefixed with ``bst_``.
    Show the token once; store only the hash.
    """
    token = TOKEN_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    return token, token_hash(token)


def token_hash(token: str) -> str:
    """The SHA-256 of a token (lowercase hex): the only form in which a token is stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_matches(token: str, expected_hash: str) -> bool:
    """Whether ``token`` hashes to ``expected_hash``, compared in constant time."""
    return hmac.compare_digest(token_hash(token), expected_hash.lower())


@dataclass(frozen=True, slots=True)
class CertificateFacts:
    """What a person or script checks a certificate by: serial, fingerprint, validity."""

    common_name: str
    serial: str
    """Hexadecimal, as ``openssl x509 -serial`` prints it (lower case)."""
    fingerprint_sha256: str
    not_after: datetime


def certificate_facts(cert_pem: bytes) -> CertificateFacts:
    """The facts of any certificate (a CA's too); it is not verified."""
    return _facts(load_certificate(cert_pem, "certificate"))


def _facts(certificate: x509.Certificate) -> CertificateFacts:
    return CertificateFacts(
        common_name=single_attribute(certificate.subject, NameOID.COMMON_NAME) or "",
        serial=format(certificate.serial_number, "x"),
        fingerprint_sha256=certificate.fingerprint(hashes.SHA256()).hex(),
        not_after=certificate.not_valid_after_utc,
    )


def load_certificate(pem: bytes, what: str) -> x509.Certificate:
    """A PEM certificate; :class:`InvalidInput` naming ``what`` when it is not one."""
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise InvalidInput(f"{what} is not a PEM X.509 certificate") from exc


def single_attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    """The one value of ``oid`` in ``name``, or None when it has none or several."""
    attributes = name.get_attributes_for_oid(oid)
    if len(attributes) != 1:
        return None
    value = attributes[0].value
    return value if isinstance(value, str) else None
