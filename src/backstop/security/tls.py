"""Mutual TLS for Backstop's gRPC: reloading server credentials, channel credentials, peer identity.

Two kinds of port
-----------------
grpc Python has no "ask for a client certificate but do not require one" mode. With
``require_client_auth=True`` the server requests a client certificate, verifies it against the
CA file and refuses the handshake without one. With ``require_client_auth=False`` the server
does not request a client certificate *at all*, so every caller on that port is anonymous and
:func:`peer_identity_from_context` returns ``None`` there, even for a caller holding a
certificate. So a controller serves:

* the **mutual TLS port** (``require_client_auth=True``) for agents, the CLI and replicas; every
  RPC there knows its caller from the certificate; and
* when nodes enrol, a separate **enrolment port** (``require_client_auth=False``, server
  authentication only) that must serve nothing but the enrolment RPC, which authenticates the
  caller by its one-time enrolment token instead.

Certificate rotation
--------------------
:func:`server_credentials` re-reads the certificate, key and CA files whenever one of them
changes (device, inode, size, mtime or ctime), at the next incoming connection, so a renewed
certificate takes effect without a restart; connections already open keep their session. A new
set of files is used only when it parses and the key matches the certificate; until then (a
half-written file, a key written before its certificate) the server keeps the previous
configuration and logs a warning. Write the files with :func:`backstop.security.pki.write_private`
and :func:`~backstop.security.pki.write_public`, which replace them atomically.

Channel credentials are read once: a client picks up a renewed certificate of its own when it
builds a new channel.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import grpc
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from backstop.core.errors import InvalidInput
from backstop.security.peers import PeerIdentity, peer_identity

logger = logging.getLogger(__name__)

AUTH_CONTEXT_CERT_KEY = "x509_pem_cert"
"""Key of the verified peer certificate (PEM) in a gRPC auth context."""

_FileState = tuple[int, int, int, int, int]


class AuthContextHolder(Protocol):
    """What :func:`peer_identity_from_context` needs: a grpc or grpc.aio servicer context."""

    def auth_context(self) -> Mapping[str, Sequence[bytes]]:
        """The transport's authentication properties."""
        ...


@dataclass(frozen=True, slots=True)
class _Material:
    """One consistent set of TLS files, checked."""

    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes | None
    serial: int


def server_credentials(
    cert_path: Path,
    key_path: Path,
    ca_path: Path | None,
    *,
    require_client_auth: bool,
) -> grpc.ServerCredentials:
    """Server TLS credentials that pick up new certificate files without a restart.

    ``ca_path`` holds the CA certificate(s) that client certificates must chain to; a bundle of
    several CAs lets a CA be rotated. It is required with ``require_client_auth=True``. With
    ``require_client_auth=False`` no client certificate is requested (see the module docs).
    Raises :class:`InvalidInput` when the files are missing or inconsistent at start.
    """
    if require_client_auth and ca_path is None:
        raise InvalidInput("require_client_auth needs a CA file to verify clients against")
    reloader = _ReloadingConfiguration(cert_path, key_path, ca_path)
    return grpc.dynamic_ssl_server_credentials(
        reloader.initial(),
        reloader.fetch,
        require_client_authentication=require_client_auth,
    )


def channel_credentials(
    ca_path: Path, cert_path: Path | None = None, key_path: Path | None = None
) -> grpc.ChannelCredentials:
    """Client TLS credentials trusting the CA in ``ca_path``, with a client certificate if given.

    ``cert_path`` and ``key_path`` go together: both (mutual TLS) or neither (server
    authentication only, e.g. to enrol). Raises :class:`InvalidInput` on missing or inconsistent
    files.
    """
    if (cert_path is None) != (key_path is None):
        raise InvalidInput("a client certificate needs both cert_path and key_path")
    ca_pem = _read(ca_path, "CA certificate")
    _load_certificates(ca_pem, ca_path)
    if cert_path is None or key_path is None:
        return grpc.ssl_channel_credentials(root_certificates=ca_pem)
    material = _load_material(cert_path, key_path, None)
    return grpc.ssl_channel_credentials(
        root_certificates=ca_pem,
        private_key=material.key_pem,
        certificate_chain=material.cert_pem,
    )


def peer_identity_from_context(context: AuthContextHolder) -> PeerIdentity | None:
    """Who is calling, from the client certificate verified in the TLS handshake.

    ``None`` when the call came without a verified certificate (plaintext, or a port that does
    not request client certificates) or when the certificate names no known role; callers must
    treat ``None`` as unauthenticated.
    """
    certificates = context.auth_context().get(AUTH_CONTEXT_CERT_KEY)
    if not certificates:
        return None
    try:
        return peer_identity(certificates[0])
    except InvalidInput as exc:
        logger.warning("peer certificate refused as an identity: %s", exc.message)
        return None


class _ReloadingConfiguration:
    """Certificate configuration fetcher that re-reads the files when they change."""

    def __init__(self, cert_path: Path, key_path: Path, ca_path: Path | None) -> None:
        self._paths = (cert_path, key_path, ca_path)
        self._lock = threading.Lock()
        try:
            self._state = self._file_state()
        except OSError as exc:
            raise InvalidInput(f"cannot read TLS file {exc.filename}: {exc.strerror}") from exc
        self._material = _load_material(cert_path, key_path, ca_path)
        self._warned: object = None

    def initial(self) -> grpc.ServerCertificateConfiguration:
        """The configuration read at start."""
        return _configuration(self._material)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by grpc before each handshake: a new configuration, or ``None`` for no change."""
        with self._lock:
            try:
                state = self._file_state()
            except OSError as exc:
                self._warn(("stat", str(exc)), f"cannot stat the TLS files: {exc}")
                return None
            if state == self._state:
                return None
            try:
                material = _load_material(*self._paths)
            except InvalidInput as exc:
                self._warn(state, exc.message)
                return None
            self._state, self._material, self._warned = state, material, None
        logger.info("TLS certificate reloaded from %s, serial %x", self._paths[0], material.serial)
        return _configuration(material)

    def _file_state(self) -> tuple[_FileState, ...]:
        states = []
        for path in self._paths:
            if path is None:
                continue
            st = os.stat(path)
            states.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
        return tuple(states)

    def _warn(self, key: object, reason: str) -> None:
        """Log once per broken state of the files, not once per connection."""
        if key == self._warned:
            return
        self._warned = key
        logger.warning(
            "keeping the previous TLS certificate (serial %x): %s", self._material.serial, reason
        )


def _configuration(material: _Material) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(material.key_pem, material.cert_pem)], root_certificates=material.ca_pem
    )


def _load_material(cert_path: Path, key_path: Path, ca_path: Path | None) -> _Material:
    cert_pem = _read(cert_path, "certificate")
    key_pem = _read(key_path, "private key")
    ca_pem = _read(ca_path, "CA certificate") if ca_path is not None else None
    leaf = _load_certificates(cert_pem, cert_path)[0]
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidInput(f"{key_path} is not an unencrypted PEM private key") from exc
    if ca_pem is not None and ca_path is not None:
        _load_certificates(ca_pem, ca_path)
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if key.public_key().public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        raise InvalidInput(f"private key {key_path} does not match certificate {cert_path}")
    return _Material(cert_pem=cert_pem, key_pem=key_pem, ca_pem=ca_pem, serial=leaf.serial_number)


def _load_certificates(pem: bytes, path: Path) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise InvalidInput(f"{path} holds no valid PEM certificate") from exc
    return certificates


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {what} {path}: {exc}") from exc
