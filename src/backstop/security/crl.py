"""The CA's revocation list: an X.509 CRL signed by the Backstop CA, held by every daemon.

Revocation must outlive the controller's database: a controller restarted on a lost or restored
store has forgotten what it revoked there. So every revoked certificate serial also goes into a
CRL signed with the CA key and kept beside it (``crl.pem`` in the CA directory). Daemons hold a
copy in their TLS directory (or at ``--crl``) and check every peer certificate against it: the
controller refuses any client certificate on it (nodes and people), agents refuse a controller
certificate on it.

A CRL is verified against the CA certificate whenever it is loaded: a CRL not signed by the CA
(tampered with, or from another CA) is refused. At start that stops the daemon; while it runs
the daemon keeps the list it had and logs an error, so a bad copy can never un-revoke anything.
The file is re-read when it changes (device, inode, size, mtime or ctime); write it with
:func:`~backstop.security.pki.write_public`, which replaces it atomically.

``next_update`` is set to the CA's end of validity and is not enforced: a stale list still
refuses everything it names, and a kill switch must not lock itself out because nobody
re-signed a file.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from backstop.core.errors import InvalidInput
from backstop.security.pki import CertificateAuthority, write_public

log = logging.getLogger(__name__)

CRL_FILE: Final = "crl.pem"
"""File name of the revocation list beside the CA and in each daemon's TLS directory."""

_FileState = tuple[int, int, int, int, int]


@dataclass(frozen=True, slots=True)
class RevokeResult:
    """What :func:`revoke` changed."""

    added: tuple[int, ...]
    """Serials newly on the list (already listed ones are left as they were)."""
    total: int
    """How many serials the list holds now."""
    number: int
    """The new list's CRL number."""


def load_crl(
    pem: bytes, ca_pem: bytes, what: str = "revocation list"
) -> x509.CertificateRevocationList:
    """Parse a PEM CRL and check that one of the CA certificates in ``ca_pem`` signed it.

    :class:`InvalidInput` (saying why) when it is not a CRL, names another issuer, or its
    signature does not verify.
    """
    try:
        crl = x509.load_pem_x509_crl(pem)
    except ValueError as exc:
        raise InvalidInput(f"{what} is not a PEM X.509 CRL") from exc
    try:
        authorities = x509.load_pem_x509_certificates(ca_pem)
    except ValueError as exc:
        raise InvalidInput(f"no CA certificate to verify {what} against") from exc
    for ca in authorities:
        key = ca.public_key()
        if ca.subject == crl.issuer and isinstance(key, ec.EllipticCurvePublicKey):
            if crl.is_signature_valid(key):
                return crl
            raise InvalidInput(
                f"{what} is NOT signed by the CA {ca.subject.rfc4514_string()}: refused "
                "(tampered with, or from another CA)"
            )
    raise InvalidInput(
        f"{what} is issued by {crl.issuer.rfc4514_string()}, not by the trusted CA: refused"
    )


def revoked_serials(crl: x509.CertificateRevocationList) -> frozenset[int]:
    """The serial numbers a (verified) CRL lists."""
    return frozenset(entry.serial_number for entry in crl)


def crl_number(crl: x509.CertificateRevocationList) -> int:
    """The CRL number extension, 0 when absent."""
    try:
        return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    except x509.ExtensionNotFound:
        return 0


def revoke(ca: CertificateAuthority, crl_path: Path, serials: Iterable[int]) -> RevokeResult:
    """Add ``serials`` to the CA's CRL at ``crl_path`` (created if missing), signed anew.

    The existing list must verify against the CA, or nothing is written: entries are only ever
    added. The new list's number is one above the old one's.
    """
    entries: list[x509.RevokedCertificate] = []
    number = 0
    if crl_path.exists():
        old = load_crl(_read(crl_path), ca.certificate_pem, str(crl_path))
        entries = list(old)
        number = crl_number(old)
    listed = {entry.serial_number for entry in entries}
    now = datetime.now(UTC)
    added = tuple(sorted({s for s in serials if s not in listed}))
    for serial in added:
        entries.append(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
        )
    builder = (
        x509.CertificateRevocationListBuilder()
        .last_update(now)
        .next_update(max(ca.not_after, now))
        .add_extension(x509.CRLNumber(number + 1), critical=False)
    )
    for entry in entries:
        builder = builder.add_revoked_certificate(entry)
    crl = ca.sign_crl(builder)
    write_public(crl_path, crl.public_bytes(serialization.Encoding.PEM))
    log.warning(
        "revocation list %s now lists %d certificate(s); added %s",
        crl_path,
        len(entries),
        ", ".join(format(s, "x") for s in added) or "none",
    )
    return RevokeResult(added=added, total=len(entries), number=number + 1)


class RevocationList:
    """A daemon's copy of the CA's CRL, verified on load and re-read when the file changes.

    A missing file is an empty list (until one appears). A file that does not verify is
    refused: at construction with :class:`InvalidInput`, later by keeping the previous list
    and logging an error (once per state of the file).
    """

    def __init__(self, crl_path: Path, ca_path: Path) -> None:
        self.path = crl_path
        self._ca_path = ca_path
        self._lock = threading.Lock()
        self._serials: frozenset[int] = frozenset()
        self._number = 0
        self._state: _FileState | None = None
        self._complained: object = None
        state = self._file_state()
        if state is not None:
            self._load(state)

    def __len__(self) -> int:
        with self._lock:
            self._refresh()
            return len(self._serials)

    def is_revoked(self, serial: int | str) -> bool:
        """Whether a serial (an int, or lowercase hex as in ``PeerIdentity``) is listed."""
        value = int(serial, 16) if isinstance(serial, str) else serial
        with self._lock:
            self._refresh()
            return value in self._serials

    def _refresh(self) -> None:
        try:
            state = self._file_state()
        except InvalidInput as exc:
            self._complain(("stat", exc.message), f"{exc.message}; keeping the list already loaded")
            return
        if state == self._state:
            return
        if state is None:
            self._complain(("gone",), "the file is gone; keeping the list already loaded")
            return
        try:
            self._load(state)
        except InvalidInput as exc:
            self._complain(state, f"{exc.message}; keeping the list already loaded")

    def _load(self, state: _FileState) -> None:
        crl = load_crl(_read(self.path), _read(self._ca_path), f"revocation list {self.path}")
        number = crl_number(crl)
        serials = revoked_serials(crl)
        if self._state is not None and not serials >= self._serials:
            raise InvalidInput(
                f"revocation list {self.path} (number {number}) drops "
                f"{len(self._serials - serials)} serial(s) the loaded one (number "
                f"{self._number}) lists"
            )
        self._serials, self._number, self._state = serials, number, state
        self._complained = None
        log.info(
            "revocation list %s loaded: number %d, %d serial(s)", self.path, number, len(serials)
        )

    def _complain(self, key: object, reason: str) -> None:
        if key == self._complained:
            return
        self._complained = key
        log.error("revocation list %s refused: %s", self.path, reason)

    def _file_state(self) -> _FileState | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise InvalidInput(f"cannot read revocation list {self.path}: {exc}") from exc
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc}") from exc
