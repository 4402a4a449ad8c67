"""Backstop's certificate authority: keys, certificates and CSRs.

Every peer (controller replica, node agent, operator client) holds an ECDSA P-256 key and a
certificate signed by the Backstop CA with SHA-256. The certificate names the peer in its
subject (``CN`` = name, ``OU`` = role) so a server reads who is calling from the TLS handshake
alone (:func:`backstop.security.peers.peer_identity`). Roles decide the extended key usage:

==========  ==========================  =====================================
role        extended key usage          subject alternative names
==========  ==========================  =====================================
controller  serverAuth + clientAuth     required: every name/IP clients dial
agent       clientAuth                  optional
client      clientAuth                  optional
==========  ==========================  =====================================

The CA decides the subject of every certificate it signs: :meth:`CertificateAuthority.sign_csr`
takes only the public key from a CSR (after checking the CSR's own signature) and ignores the
subject and extensions the requester asked for.

Enrolment tokens and reading a certificate's identity are in :mod:`backstop.security.peers`.

Private files are written atomically with mode 0600 (:func:`write_private`).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from backstop.core.errors import Conflict, InvalidInput
from backstop.core.files import write_atomically
from backstop.security.peers import PEER_ROLES, PeerRole, load_certificate, single_attribute

logger = logging.getLogger(__name__)

CA_CERT_FILE: Final = "ca.crt"
"""File name of the CA certificate inside a CA directory."""
CA_KEY_FILE: Final = "ca.key"
"""File name of the CA private key inside a CA directory (mode 0600)."""

_CLOCK_SKEW: Final = timedelta(minutes=5)
"""Certificates start this long in the past so peers with slightly slow clocks accept them."""
_MAX_CSR_BYTES: Final = 16 * 1024
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_DNS_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_RE: Final = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")
_EKU: Final[dict[str, tuple[x509.ObjectIdentifier, ...]]] = {
    "controller": (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
    "agent": (ExtendedKeyUsageOID.CLIENT_AUTH,),
    "client": (ExtendedKeyUsageOID.CLIENT_AUTH,),
}

_SignablePublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
_E = TypeVar("_E", bound=x509.ExtensionType)


@dataclass(frozen=True, slots=True)
class CertBundle:
    """A certificate and the private key it was issued for, both PEM-encoded."""

    cert_pem: bytes
    """The X.509 certificate (PEM)."""
    key_pem: bytes
    """The unencrypted PKCS#8 private key (PEM); write it with :func:`write_private`."""


class CertificateAuthority:
    """The Backstop CA: a self-signed ECDSA P-256 certificate and its key.

    Create one with :meth:`init` (once, on the machine that will hold the key) and open it with
    :meth:`load`.
    """

    def __init__(self, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        """Wrap a CA certificate and its matching private key (use :meth:`init` or :meth:`load`)."""
        if not _same_public_key(certificate.public_key(), key.public_key()):
            raise InvalidInput("the CA private key does not match the CA certificate")
        self._certificate = certificate
        self._key = key

    @classmethod
    def init(
        cls, directory: Path, name: str = "Backstop CA", valid_days: int = 3650
    ) -> CertificateAuthority:
        """Create a new CA in ``directory`` (``ca.crt`` and ``ca.key``, the key mode 0600).

        Raises :class:`Conflict` when either file exists already: replacing a CA would cut off
        every node enrolled with it, so that must be an explicit operator decision.
        """
        if not name.strip() or len(name) > 64:
            raise InvalidInput(f"CA name must be 1 to 64 characters, got {name!r}")
        _check_valid_days(valid_days)
        cert_path, key_path = directory / CA_CERT_FILE, directory / CA_KEY_FILE
        existing = [str(p) for p in (cert_path, key_path) if p.exists()]
        if existing:
            raise Conflict(
                f"a CA already exists ({', '.join(existing)}); refusing to overwrite it "
                "(remove it deliberately first: every certificate it issued stops working)"
            )
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidInput(f"cannot create CA directory {directory}: {exc}") from exc

        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(_random_serial())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + timedelta(days=valid_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(signs_certificates=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        write_private(key_path, _private_pem(key), overwrite=False)
        try:
            write_public(
                cert_path, certificate.public_bytes(serialization.Encoding.PEM), overwrite=False
            )
        except BaseException:
            key_path.unlink(missing_ok=True)
            raise
        logger.info("created CA %r in %s", name, directory)
        return cls(certificate, key)

    @classmethod
    def load(cls, directory: Path) -> CertificateAuthority:
        """Open the CA kept in ``directory``; :class:`InvalidInput` if it is missing or broken."""
        cert_path, key_path = directory / CA_CERT_FILE, directory / CA_KEY_FILE
        cert_pem = _read(cert_path, "CA certificate")
        key_pem = _read(key_path, "CA private key")
        if key_path.stat().st_mode & 0o077:
            logger.warning(
                "CA private key %s is readable by group or others; chmod 600 it", key_path
            )
        certificate = load_certificate(cert_pem, str(cert_path))
        constraints = _extension(certificate, x509.BasicConstraints)
        if constraints is None or not constraints.ca:
            raise InvalidInput(f"{cert_path} is not a CA certificate")
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise InvalidInput(f"{key_path} is not an unencrypted PEM private key") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise InvalidInput(f"{key_path} is not an ECDSA P-256 key")
        return cls(certificate, key)

    @property
    def certificate_pem(self) -> bytes:
        """The CA certificate (PEM): what every peer trusts."""
        return self._certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def name(self) -> str:
        """The CA's common name."""
        return single_attribute(self._certificate.subject, NameOID.COMMON_NAME) or ""

    @property
    def not_after(self) -> datetime:
        """When the CA certificate (and so every certificate it issued) stops being valid."""
        return self._certificate.not_valid_after_utc

    def sign_crl(
        self, builder: x509.CertificateRevocationListBuilder
    ) -> x509.CertificateRevocationList:
        """Sign a revocation list as this CA (see :mod:`backstop.security.crl`)."""
        return builder.issuer_name(self._certificate.subject).sign(self._key, hashes.SHA256())

    def issue(
        self,
        name: str,
        role: PeerRole,
        *,
        dns: Iterable[str] = (),
        ips: Iterable[str] = (),
        valid_days: int = 365,
    ) -> CertBundle:
        """Generate a P-256 key and a certificate for ``name`` acting as ``role``.

        A controller certificate must carry every DNS name and IP address that clients dial
        (``dns=["localhost"], ips=["127.0.0.1"]`` for a loopback controller). The validity is
        cut short at the CA's own end of validity.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = self._sign(
            key.public_key(), name=name, role=role, dns=dns, ips=ips, valid_days=valid_days
        )
        return CertBundle(
            cert_pem=certificate.public_bytes(serialization.Encoding.PEM),
            key_pem=_private_pem(key),
        )

    def sign_csr(
        self,
        csr_pem: bytes,
        *,
        name: str,
        role: PeerRole,
        dns: Iterable[str] = (),
        ips: Iterable[str] = (),
        valid_days: int = 365,
    ) -> bytes:
        """Sign the public key of a CSR as a certificate for ``name`` acting as ``role``.

        The CSR must be signed by its own key (proof the requester holds it), and the key must
        be ECDSA P-256 or Ed25519. Its subject and extensions are ignored: ``name``, ``role``,
        ``dns`` and ``ips`` are what the CA decided. Returns the certificate (PEM).
        """
        if len(csr_pem) > _MAX_CSR_BYTES:
            raise InvalidInput(f"CSR is {len(csr_pem)} bytes, more than {_MAX_CSR_BYTES}")
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
            public_key = csr.public_key()
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise InvalidInput("not a PEM certificate signing request") from exc
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            if public_key.curve.name != "secp256r1":
                raise InvalidInput(f"CSR key is on curve {public_key.curve.name}, not P-256")
        elif not isinstance(public_key, ed25519.Ed25519PublicKey):
            raise InvalidInput(
                f"CSR key is {type(public_key).__name__}; only ECDSA P-256 and Ed25519 are accepted"
            )
        try:
            signature_valid = csr.is_signature_valid
        except (ValueError, UnsupportedAlgorithm, InvalidSignature) as exc:
            raise InvalidInput("the CSR's signature cannot be checked") from exc
        if not signature_valid:
            raise InvalidInput("the CSR is not signed by its own key")
        certificate = self._sign(
            public_key, name=name, role=role, dns=dns, ips=ips, valid_days=valid_days
        )
        return certificate.public_bytes(serialization.Encoding.PEM)

    def _sign(
        self,
        public_key: _SignablePublicKey,
        *,
        name: str,
        role: PeerRole,
        dns: Iterable[str],
        ips: Iterable[str],
        valid_days: int,
    ) -> x509.Certificate:
        _check_name(name)
        if role not in PEER_ROLES:
            raise InvalidInput(f"role must be one of {sorted(PEER_ROLES)}, got {role!r}")
        _check_valid_days(valid_days)
        alt_names = _alt_names(dns, ips)
        if role == "controller" and not alt_names:
            raise InvalidInput(
                "a controller certificate needs the DNS names or IP addresses clients dial "
                "(for example dns=localhost, ips=127.0.0.1)"
            )
        now = datetime.now(UTC)
        not_before = max(now - _CLOCK_SKEW, self._certificate.not_valid_before_utc)
        not_after = now + timedelta(days=valid_days)
        if not_after > self.not_after:
            logger.info("certificate for %s ends with the CA at %s", name, self.not_after)
            not_after = self.not_after
        builder = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.COMMON_NAME, name),
                        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                    ]
                )
            )
            .issuer_name(self._certificate.subject)
            .public_key(public_key)
            .serial_number(_random_serial())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(signs_certificates=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(list(_EKU[role])), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        if alt_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        certificate = builder.sign(self._key, hashes.SHA256())
        logger.info(
            "issued %s certificate for %s, serial %x, valid until %s",
            role,
            name,
            certificate.serial_number,
            not_after,
        )
        return certificate


def make_csr(name: str) -> tuple[bytes, bytes]:
    """Generate a P-256 key and a CSR for ``name``; returns ``(key_pem, csr_pem)``.

    The key never leaves the requester; only the CSR goes to the CA.
    """
    _check_name(name)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .sign(key, hashes.SHA256())
    )
    return _private_pem(key), csr.public_bytes(serialization.Encoding.PEM)


def write_private(path: Path, data: bytes, *, overwrite: bool = True) -> None:
    """Write a secret file atomically with mode 0600 (whatever the umask).

    The data goes to a temporary file in the same directory, is fsynced and then renamed over
    ``path``, so readers see the old or the new content, never a mix. With
    ``overwrite=False`` an existing ``path`` raises :class:`Conflict` and is left untouched.
    """
    write_atomically(path, data, mode=0o600, overwrite=overwrite, error=InvalidInput)


def write_public(path: Path, data: bytes, *, overwrite: bool = True) -> None:
    """Write a public file (a certificate) atomically with mode 0644; see :func:`write_private`."""
    write_atomically(path, data, mode=0o644, overwrite=overwrite, error=InvalidInput)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise InvalidInput(f"{what} {path} does not exist") from exc
    except OSError as exc:
        raise InvalidInput(f"cannot read {what} {path}: {exc}") from exc


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _same_public_key(a: object, b: object) -> bool:
    if not isinstance(a, _SignablePublicKey) or not isinstance(b, _SignablePublicKey):
        return False
    encoding, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return a.public_bytes(encoding, spki) == b.public_bytes(encoding, spki)


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    """Digital signatures only; a CA's key also signs certificates and revocation lists."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _random_serial() -> int:
    while True:
        serial = secrets.randbits(128)
        if serial:
            return serial


def _extension(certificate: x509.Certificate, kind: type[_E]) -> _E | None:
    try:
        return certificate.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _check_name(name: str) -> None:
    if not _NAME_RE.fullmatch(name):
        raise InvalidInput(
            f"certificate name must be 1 to 64 of A-Z a-z 0-9 . _ @ - "
            f"(starting with a letter or digit), got {name!r}"
        )


def _check_valid_days(valid_days: int) -> None:
    if isinstance(valid_days, bool) or not isinstance(valid_days, int) or valid_days < 1:
        raise InvalidInput(f"valid_days must be a positive whole number, got {valid_days!r}")


def _alt_names(dns: Iterable[str], ips: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in dns:
        if not _DNS_RE.fullmatch(host) or len(host) > 253:
            raise InvalidInput(f"not a DNS name: {host!r}")
        names.append(x509.DNSName(host.lower()))
    for address in ips:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(address)))
        except ValueError as exc:
            raise InvalidInput(f"not an IP address: {address!r}") from exc
    return names
