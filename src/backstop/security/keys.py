"""Operator signing keys: Ed25519 key pairs, their files, signing and verification.

An operator key signs the canonical bytes of a correction (a serialized ``CorrectionSpec``,
see ``backstop.wire.convert.spec_bytes``) and nothing else. A key is named by its *key id*,
the first 16 hex digits of the SHA-256 of its raw 32-byte public key.

On disk, ``save(path)`` writes the private key as unencrypted PKCS#8 PEM with mode 0600, and
``<path>.pub`` with the public key as one line of base64 of the raw 32 bytes (the form a trust
policy lists). ``load_private`` refuses a private key file that group or others can read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from backstop.core.errors import Conflict, InvalidInput
from backstop.core.files import write_atomically

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
KEY_ID_HEX_DIGITS = 16
PUBLIC_SUFFIX = ".pub"

_FIELD_PRIME = 2**255 - 19
_ORDER_8_Y = 2707385501144840649318225287225658788936804267575313519463743609750303402022
_SMALL_ORDER_Y = frozenset({0, 1, _FIELD_PRIME - 1, _ORDER_8_Y, _FIELD_PRIME - _ORDER_8_Y})
"""y coordinates of the eight points of order 1, 2, 4 and 8 on edwards25519."""


def is_weak_public_key(public_raw: bytes) -> bool:
    """Whether a raw key is a small-order point or a non-canonical encoding.

    Such a "key" has no private half, and OpenSSL accepts forgeries against some of them (an
    all-zero key verifies an all-zero signature over some messages), so Backstop refuses them
    wherever a key enters (the same list libsodium blocks).
    """
    y = int.from_bytes(public_raw, "little") & ((1 << 255) - 1)
    return y >= _FIELD_PRIME or y in _SMALL_ORDER_Y


def key_id_of(public_raw: bytes) -> str:
    """The key id of a raw 32-byte Ed25519 public key: 16 hex digits of its SHA-256."""
    return hashlib.sha256(public_raw).hexdigest()[:KEY_ID_HEX_DIGITS]


def public_to_text(public_raw: bytes) -> str:
    """The base64 form of a raw public key, as a trust policy and ``.pub`` files hold it."""
    return base64.b64encode(public_raw).decode("ascii")


def public_from_text(text: str) -> bytes:
    """Parse a public key given as base64 of the raw 32 bytes or as a PEM block.

    Returns the raw 32 bytes. Raises ``InvalidInput`` for anything else (a key of another
    algorithm, bad base64, a wrong length).
    """
    stripped = text.strip()
    if stripped.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(stripped.encode("ascii"))
        except (ValueError, UnsupportedAlgorithm, UnicodeEncodeError) as exc:
            raise InvalidInput("public key PEM block cannot be parsed") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise InvalidInput(
                f"public key is a {type(key).__name__}, not an Ed25519 key",
            )
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return _refuse_weak(raw, "PEM block")
    try:
        raw = base64.b64decode(stripped, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(
            f"public key {_preview(stripped)} is neither base64 nor a PEM block",
        ) from exc
    if len(raw) != PUBLIC_KEY_BYTES:
        raise InvalidInput(
            f"public key {_preview(stripped)} decodes to {len(raw)} bytes; "
            f"an Ed25519 public key has {PUBLIC_KEY_BYTES}",
        )
    return _refuse_weak(raw, _preview(stripped))


def verify(public_raw: bytes, data: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is a valid Ed25519 signature of ``data`` by ``public_raw``.

    Never raises for a bad signature or a malformed key; it returns ``False``. A weak key
    (see :func:`is_weak_public_key`) verifies nothing.
    """
    if len(public_raw) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    if is_weak_public_key(public_raw):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class OperatorKey:
    """An operator's Ed25519 key pair."""

    private_key: Ed25519PrivateKey = field(repr=False)

    def __repr__(self) -> str:
        return f"OperatorKey(key_id={self.key_id!r})"

    @property
    def key_id(self) -> str:
        """16 hex digits naming this key (see :func:`key_id_of`)."""
        return key_id_of(self.public_raw())

    def public_raw(self) -> bytes:
        """The raw 32-byte public key."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw,
            serialization.PublicFormat.Raw,
        )

    def public_text(self) -> str:
        """The public key as base64 of its raw bytes (for a trust policy)."""
        return public_to_text(self.public_raw())

    def private_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def sign(self, spec_bytes: bytes) -> bytes:
        """The 64-byte Ed25519 signature of exactly ``spec_bytes``."""
        return self.private_key.sign(spec_bytes)

    def save(self, path: Path, *, overwrite: bool = False) -> None:
        """Write the private key to ``path`` (0600) and the public key to ``<path>.pub``.

        Both files are replaced atomically. An existing private key is never replaced unless
        ``overwrite`` is set (``Conflict`` otherwise), so an operator's key is not lost by a
        second ``keygen``.
        """
        if path.exists() and not overwrite:
            raise Conflict(f"{path} already exists; refusing to overwrite an operator key")
        write_atomically(path, self.private_pem(), mode=0o600)
        public_line = (self.public_text() + "\n").encode("ascii")
        write_atomically(public_path(path), public_line, mode=0o644)


def generate_key() -> OperatorKey:
    """A new random operator key."""
    return OperatorKey(Ed25519PrivateKey.generate())


def public_path(private_path: Path) -> Path:
    """Where the public half of the key at ``private_path`` is kept."""
    return private_path.with_name(private_path.name + PUBLIC_SUFFIX)


def load_private(path: Path) -> OperatorKey:
    """Load a private key written by :meth:`OperatorKey.save` (or any Ed25519 PKCS#8 PEM).

    Refuses (``InvalidInput``) a file that group or others can read or write, a missing
    file, and anything that is not an unencrypted Ed25519 private key.
    """
    try:
        with path.open("rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise InvalidInput(
                    f"private key {path} is accessible by group or others "
                    f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}",
                )
            data = fh.read()
    except OSError as exc:
        raise InvalidInput(f"cannot read private key {path}: {exc.strerror}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidInput(
            f"{path} is not an unencrypted PEM private key",
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidInput(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return OperatorKey(key)


def load_public(path: Path) -> bytes:
    """Read a public key file (base64 raw or PEM) and return its raw 32 bytes."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read public key {path}: {exc}") from exc
    return public_from_text(text)


def _refuse_weak(raw: bytes, what: str) -> bytes:
    if is_weak_public_key(raw):
        raise InvalidInput(
            f"public key {what} is a small-order or non-canonical point, not a real key",
        )
    return raw


def _preview(text: str) -> str:
    shown = text if len(text) <= 24 else text[:20] + "..."
    return repr(shown)
