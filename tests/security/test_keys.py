"""Operator keys: signing, verification, key ids, the files and their permissions."""

from __future__ import annotations

import base64
import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from backstop.core.errors import Conflict, InvalidInput
from backstop.security.keys import (
    generate_key,
    is_weak_public_key,
    key_id_of,
    load_private,
    load_public,
    public_from_text,
    public_path,
    verify,
)

SPEC = b"\x0a\x05cor-1\x10\x04 a serialized CorrectionSpec"


def test_sign_verify_round_trip() -> None:
    key = generate_key()
    signature = key.sign(SPEC)
    assert len(signature) == 64
    assert verify(key.public_raw(), SPEC, signature)


def test_signature_over_other_bytes_fails() -> None:
    key = generate_key()
    signature = key.sign(SPEC)
    assert not verify(key.public_raw(), SPEC + b"\x00", signature)
    flipped = bytes([SPEC[0] ^ 1]) + SPEC[1:]
    assert not verify(key.public_raw(), flipped, signature)


def test_signature_from_another_key_fails() -> None:
    alice, mallory = generate_key(), generate_key()
    assert not verify(alice.public_raw(), SPEC, mallory.sign(SPEC))


@pytest.mark.parametrize(
    ("public", "signature"),
    [
        (b"short", b"\x00" * 64),
        (b"\x00" * 32, b"\x00" * 64),  # a low-order point: not a usable key
        (None, b"\x00" * 63),
        (None, b""),
    ],
)
def test_verify_never_raises_on_garbage(public: bytes | None, signature: bytes) -> None:
    raw = public if public is not None else generate_key().public_raw()
    assert verify(raw, SPEC, signature) is False


SMALL_ORDER_ENCODINGS = [
    bytes(32),  # y = 0, order 4
    (1).to_bytes(32, "little"),  # the identity
    (2**255 - 20).to_bytes(32, "little"),  # y = -1, order 2
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),  # order 8
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),  # order 8
    (2**255 - 18).to_bytes(32, "little"),  # p + 1: a non-canonical encoding of the identity
]


@pytest.mark.parametrize("raw", SMALL_ORDER_ENCODINGS)
@pytest.mark.parametrize("sign_bit", [0, 0x80])
def test_small_order_keys_are_refused(raw: bytes, sign_bit: int) -> None:
    weak = raw[:31] + bytes([raw[31] | sign_bit])
    assert is_weak_public_key(weak)
    assert not verify(weak, SPEC, bytes(64))
    with pytest.raises(InvalidInput, match="small-order or non-canonical"):
        public_from_text(base64.b64encode(weak).decode())


def test_real_keys_are_not_weak() -> None:
    assert not any(is_weak_public_key(generate_key().public_raw()) for _ in range(20))


def test_key_id_is_prefix_of_sha256_of_raw_public_key() -> None:
    key = generate_key()
    raw = key.public_raw()
    assert len(raw) == 32
    assert key.key_id == hashlib.sha256(raw).hexdigest()[:16]
    assert key.key_id == key_id_of(raw)
    assert generate_key().key_id != key.key_id


def test_save_writes_private_0600_and_public_line(tmp_path: Path) -> None:
    key = generate_key()
    path = tmp_path / "alice.key"
    key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    pub_text = public_path(path).read_text()
    assert pub_text == base64.b64encode(key.public_raw()).decode() + "\n"
    assert load_public(public_path(path)) == key.public_raw()
    assert {p.name for p in tmp_path.iterdir()} == {"alice.key", "alice.key.pub"}  # no temp files

    loaded = load_private(path)
    assert loaded.key_id == key.key_id
    assert verify(key.public_raw(), SPEC, loaded.sign(SPEC))


def test_save_refuses_to_overwrite_a_key(tmp_path: Path) -> None:
    path = tmp_path / "alice.key"
    first = generate_key()
    first.save(path)
    with pytest.raises(Conflict, match="refusing to overwrite"):
        generate_key().save(path)
    assert load_private(path).key_id == first.key_id
    second = generate_key()
    second.save(path, overwrite=True)
    assert load_private(path).key_id == second.key_id


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_load_refuses_group_or_world_accessible_key(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "alice.key"
    generate_key().save(path)
    path.chmod(mode)
    with pytest.raises(InvalidInput, match=r"chmod 600") as info:
        load_private(path)
    assert f"{mode:04o}" in info.value.message


def test_load_refuses_missing_file_and_other_key_types(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot read private key"):
        load_private(tmp_path / "absent.key")

    ec_path = tmp_path / "ec.key"
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_path.write_bytes(
        ec_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    ec_path.chmod(0o600)
    with pytest.raises(InvalidInput, match="not an Ed25519 key"):
        load_private(ec_path)

    junk = tmp_path / "junk.key"
    junk.write_bytes(b"not a key\n")
    junk.chmod(0o600)
    with pytest.raises(InvalidInput, match="not an unencrypted PEM private key"):
        load_private(junk)


def test_public_from_text_accepts_base64_and_pem() -> None:
    key = generate_key()
    raw = key.public_raw()
    pem = (
        key.private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    assert public_from_text(base64.b64encode(raw).decode()) == raw
    assert public_from_text("  " + key.public_text() + "\n") == raw
    assert public_from_text(pem) == raw


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not base64!", "neither base64 nor a PEM block"),
        (base64.b64encode(b"\x01" * 31).decode(), "decodes to 31 bytes"),
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "cannot be parsed"),
    ],
)
def test_public_from_text_rejects_bad_input(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        public_from_text(text)


def test_public_from_text_rejects_pem_of_another_algorithm() -> None:
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with pytest.raises(InvalidInput, match="not an Ed25519 key"):
        public_from_text(pem)


def test_key_repr_does_not_show_private_material() -> None:
    key = generate_key()
    assert repr(key) == f"OperatorKey(key_id={key.key_id!r})"
    assert isinstance(key.private_key, ed25519.Ed25519PrivateKey)
