"""The CA: what it writes, what it issues, what it refuses; tokens; private files."""

from __future__ import annotations

import ipaddress
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from backstop.core.errors import Conflict, InvalidInput
from backstop.security.peers import new_enrolment_token, peer_identity, token_hash, token_matches
from backstop.security.pki import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    CertificateAuthority,
    make_csr,
    write_private,
    write_public,
)


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("ca") / "pki"
    CertificateAuthority.init(directory, name="Test CA")
    return directory


@pytest.fixture(scope="module")
def ca(ca_dir: Path) -> CertificateAuthority:
    return CertificateAuthority.load(ca_dir)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def _subject(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(oid)]


def _eku(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def _csr(key: object, *, cn: str = "someone", ou: str | None = None, san: str = "") -> bytes:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if ou:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes))
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False
        )
    builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = builder.sign(key, algorithm)  # type: ignore[arg-type]
    return csr.public_bytes(serialization.Encoding.PEM)


class TestCaInit:
    def test_writes_a_self_signed_ca_and_a_private_key(
        self, tmp_path: Path, permissive_umask: None
    ) -> None:
        created = CertificateAuthority.init(tmp_path / "ca", name="Acme CA", valid_days=30)

        cert = _cert((tmp_path / "ca" / CA_CERT_FILE).read_bytes())
        assert cert.subject == cert.issuer
        assert _subject(cert, NameOID.COMMON_NAME) == ["Acme CA"]
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        assert constraints.value.ca
        assert constraints.critical
        cert.verify_directly_issued_by(cert)
        assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
        assert cert.signature_hash_algorithm is not None
        assert cert.signature_hash_algorithm.name == "sha256"
        lifetime = cert.not_valid_after_utc - datetime.now(UTC)
        assert timedelta(days=29) < lifetime <= timedelta(days=30)
        assert stat.S_IMODE((tmp_path / "ca" / CA_KEY_FILE).stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "ca").stat().st_mode) == 0o700
        assert created.certificate_pem == (tmp_path / "ca" / CA_CERT_FILE).read_bytes()
        # Nothing else: no temporary file left behind.
        assert sorted(p.name for p in (tmp_path / "ca").iterdir()) == [CA_CERT_FILE, CA_KEY_FILE]

    def test_refuses_to_overwrite_an_existing_ca(self, tmp_path: Path) -> None:
        CertificateAuthority.init(tmp_path)
        before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

        with pytest.raises(Conflict, match="refusing to overwrite"):
            CertificateAuthority.init(tmp_path)

        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before

    def test_refuses_when_only_the_key_is_left(self, tmp_path: Path) -> None:
        CertificateAuthority.init(tmp_path)
        (tmp_path / CA_CERT_FILE).unlink()
        with pytest.raises(Conflict, match=CA_KEY_FILE):
            CertificateAuthority.init(tmp_path)

    def test_load_reads_back_the_same_ca(self, tmp_path: Path) -> None:
        created = CertificateAuthority.init(tmp_path, name="Round Trip")
        loaded = CertificateAuthority.load(tmp_path)
        assert loaded.certificate_pem == created.certificate_pem
        assert loaded.name == "Round Trip"

    def test_load_without_a_ca_says_so(self, tmp_path: Path) -> None:
        with pytest.raises(InvalidInput, match="does not exist"):
            CertificateAuthority.load(tmp_path)

    def test_load_refuses_a_key_of_another_ca(self, tmp_path: Path) -> None:
        CertificateAuthority.init(tmp_path / "a")
        CertificateAuthority.init(tmp_path / "b")
        (tmp_path / "a" / CA_KEY_FILE).write_bytes((tmp_path / "b" / CA_KEY_FILE).read_bytes())
        with pytest.raises(InvalidInput, match="does not match"):
            CertificateAuthority.load(tmp_path / "a")

    def test_load_refuses_a_leaf_certificate_as_ca(
        self, tmp_path: Path, ca: CertificateAuthority
    ) -> None:
        bundle = ca.issue("node-1", "agent")
        (tmp_path / CA_CERT_FILE).write_bytes(bundle.cert_pem)
        write_private(tmp_path / CA_KEY_FILE, bundle.key_pem)
        with pytest.raises(InvalidInput, match="not a CA"):
            CertificateAuthority.load(tmp_path)


class TestIssue:
    def test_controller_certificate_serves_and_dials(self, ca: CertificateAuthority) -> None:
        bundle = ca.issue("ctl-1", "controller", dns=["localhost"], ips=["127.0.0.1", "::1"])
        cert = _cert(bundle.cert_pem)

        cert.verify_directly_issued_by(_cert(ca.certificate_pem))
        assert _subject(cert, NameOID.COMMON_NAME) == ["ctl-1"]
        assert _subject(cert, NameOID.ORGANIZATIONAL_UNIT_NAME) == ["controller"]
        assert _eku(cert) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == ["localhost"]
        assert san.get_values_for_type(x509.IPAddress) == [
            ipaddress.ip_address("127.0.0.1"),
            ipaddress.ip_address("::1"),
        ]
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        assert not constraints.value.ca
        key = serialization.load_pem_private_key(bundle.key_pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        assert key.curve.name == "secp256r1"
        assert key.public_key() == cert.public_key()

    @pytest.mark.parametrize("role", ["agent", "client"])
    def test_agents_and_clients_only_dial(self, ca: CertificateAuthority, role: str) -> None:
        cert = _cert(ca.issue("n1", role).cert_pem)  # type: ignore[arg-type]
        assert _eku(cert) == {ExtendedKeyUsageOID.CLIENT_AUTH}
        assert _subject(cert, NameOID.ORGANIZATIONAL_UNIT_NAME) == [role]

    def test_serials_are_random_and_at_most_128_bits(self, ca: CertificateAuthority) -> None:
        serials = {_cert(ca.issue(f"n{i}", "agent").cert_pem).serial_number for i in range(5)}
        assert len(serials) == 5
        assert all(0 < s < 2**128 for s in serials)
        assert max(serials).bit_length() > 100

    def test_validity_stops_with_the_ca(self, tmp_path: Path) -> None:
        short = CertificateAuthority.init(tmp_path, valid_days=10)
        cert = _cert(short.issue("n1", "agent", valid_days=365).cert_pem)
        assert cert.not_valid_after_utc == short.not_after

    def test_controller_without_names_to_dial_is_refused(self, ca: CertificateAuthority) -> None:
        with pytest.raises(InvalidInput, match="DNS names or IP addresses"):
            ca.issue("ctl", "controller")

    @pytest.mark.parametrize(
        ("name", "role", "kwargs"),
        [
            ("n1", "admin", {}),
            ("", "agent", {}),
            ("a/b", "agent", {}),
            ("x" * 65, "agent", {}),
            ("n1", "agent", {"ips": ["not-an-ip"]}),
            ("n1", "agent", {"dns": ["bad host"]}),
            ("n1", "agent", {"valid_days": 0}),
        ],
    )
    def test_bad_requests_are_refused(
        self, ca: CertificateAuthority, name: str, role: str, kwargs: dict[str, object]
    ) -> None:
        with pytest.raises(InvalidInput):
            ca.issue(name, role, **kwargs)  # type: ignore[arg-type]


class TestSignCsr:
    def test_the_ca_decides_the_subject(self, ca: CertificateAuthority) -> None:
        key_pem, _ = make_csr("node-7")
        key = serialization.load_pem_private_key(key_pem, password=None)
        greedy = _csr(key, cn="admin", ou="controller", san="controller.example")

        cert = _cert(ca.sign_csr(greedy, name="node-7", role="agent"))

        assert _subject(cert, NameOID.COMMON_NAME) == ["node-7"]
        assert _subject(cert, NameOID.ORGANIZATIONAL_UNIT_NAME) == ["agent"]
        assert _eku(cert) == {ExtendedKeyUsageOID.CLIENT_AUTH}
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        with pytest.raises(x509.ExtensionNotFound):
            cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        assert cert.public_key() == key.public_key()
        cert.verify_directly_issued_by(_cert(ca.certificate_pem))

    def test_make_csr_round_trip(self, ca: CertificateAuthority) -> None:
        key_pem, csr_pem = make_csr("node-8")
        cert = _cert(ca.sign_csr(csr_pem, name="node-8", role="agent", valid_days=7))
        key = serialization.load_pem_private_key(key_pem, password=None)
        assert cert.public_key() == key.public_key()
        assert peer_identity(ca.sign_csr(csr_pem, name="node-8", role="agent")).name == "node-8"

    def test_ed25519_keys_are_accepted(self, ca: CertificateAuthority) -> None:
        key = ed25519.Ed25519PrivateKey.generate()
        cert = _cert(ca.sign_csr(_csr(key), name="op", role="client"))
        assert cert.public_key() == key.public_key()

    def test_a_csr_with_a_bad_signature_is_refused(self, ca: CertificateAuthority) -> None:
        _, csr_pem = make_csr("node-9")
        der = bytearray(x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER))
        der[-3] ^= 0x01  # inside the signature's s integer
        tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
        with pytest.raises(InvalidInput, match="not signed by its own key"):
            ca.sign_csr(tampered, name="node-9", role="agent")

    def test_a_csr_claiming_another_key_is_refused(self, ca: CertificateAuthority) -> None:
        # Signed by one key, naming another: whoever sent it does not hold the key it names.
        _, csr_pem = make_csr("node-a")
        csr = x509.load_pem_x509_csr(csr_pem)
        spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        own = csr.public_key().public_bytes(*spki)
        other = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(*spki)
        der = csr.public_bytes(serialization.Encoding.DER)
        assert der.count(own) == 1
        assert len(own) == len(other)
        forged = x509.load_der_x509_csr(der.replace(own, other))
        with pytest.raises(InvalidInput, match="not signed by its own key"):
            ca.sign_csr(forged.public_bytes(serialization.Encoding.PEM), name="n", role="agent")

    @pytest.mark.parametrize(
        "key",
        [
            pytest.param(lambda: rsa.generate_private_key(65537, 2048), id="rsa"),
            pytest.param(lambda: ec.generate_private_key(ec.SECP384R1()), id="p384"),
        ],
    )
    def test_other_key_types_are_refused(self, ca: CertificateAuthority, key: object) -> None:
        with pytest.raises(InvalidInput, match="P-256"):
            ca.sign_csr(_csr(key()), name="n1", role="agent")  # type: ignore[operator]

    def test_garbage_is_refused(self, ca: CertificateAuthority) -> None:
        with pytest.raises(InvalidInput, match="certificate signing request"):
            ca.sign_csr(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n", name="n", role="agent")


class TestPeerIdentity:
    def test_reads_name_role_serial_and_fingerprint(self, ca: CertificateAuthority) -> None:
        pem = ca.issue("node-3", "agent", valid_days=3).cert_pem
        cert = _cert(pem)

        identity = peer_identity(pem)

        assert identity.name == "node-3"
        assert identity.role == "agent"
        assert int(identity.serial, 16) == cert.serial_number
        assert identity.fingerprint_sha256 == cert.fingerprint(hashes.SHA256()).hex()
        assert identity.not_after == cert.not_valid_after_utc
        assert peer_identity(pem.decode()) == identity

    def test_a_certificate_without_a_role_is_not_an_identity(
        self, ca: CertificateAuthority
    ) -> None:
        with pytest.raises(InvalidInput, match="role"):
            peer_identity(ca.certificate_pem)


class TestEnrolmentTokens:
    def test_token_shape_and_hash(self) -> None:
        token, digest = new_enrolment_token()
        assert token.startswith("bst_")
        assert len(token) == 4 + 43  # 32 bytes of urlsafe base64 without padding
        assert set(token[4:]) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        )
        assert digest == token_hash(token)
        assert len(digest) == 64
        assert int(digest, 16) >= 0

    def test_tokens_differ(self) -> None:
        assert len({new_enrolment_token()[0] for _ in range(20)}) == 20

    def test_matching(self) -> None:
        token, digest = new_enrolment_token()
        other, _ = new_enrolment_token()
        assert token_matches(token, digest)
        assert token_matches(token, digest.upper())
        assert not token_matches(other, digest)
        assert not token_matches(token[:-1], digest)


class TestFiles:
    def test_private_files_are_0600_whatever_the_umask(
        self, tmp_path: Path, permissive_umask: None
    ) -> None:
        write_private(tmp_path / "k", b"secret")
        write_public(tmp_path / "c", b"public")
        assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "c").stat().st_mode) == 0o644
        assert (tmp_path / "k").read_bytes() == b"secret"

    def test_replacing_a_file_swaps_it_whole_and_leaves_no_temporary(self, tmp_path: Path) -> None:
        target = tmp_path / "k"
        (target).write_bytes(b"old")
        (target).chmod(0o644)
        old_inode = target.stat().st_ino

        write_private(target, b"new")

        assert target.read_bytes() == b"new"
        assert target.stat().st_ino != old_inode
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        assert [p.name for p in tmp_path.iterdir()] == ["k"]

    def test_no_overwrite_keeps_the_existing_file(self, tmp_path: Path) -> None:
        write_private(tmp_path / "k", b"first")
        with pytest.raises(Conflict):
            write_private(tmp_path / "k", b"second", overwrite=False)
        assert (tmp_path / "k").read_bytes() == b"first"
        assert [p.name for p in tmp_path.iterdir()] == ["k"]

    def test_an_unwritable_place_is_reported(self, tmp_path: Path) -> None:
        with pytest.raises(InvalidInput, match="cannot write"):
            write_private(tmp_path / "missing-dir" / "k", b"x")
