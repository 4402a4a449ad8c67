"""Mutual TLS against real gRPC servers on loopback, calling the standard health service."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from backstop.core.errors import InvalidInput
from backstop.security.peers import PeerIdentity, peer_identity
from backstop.security.pki import CertBundle, CertificateAuthority, write_private, write_public
from backstop.security.tls import (
    channel_credentials,
    peer_identity_from_context,
    server_credentials,
)

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Files:
    """A certificate and key on disk."""

    cert: Path
    key: Path

    @classmethod
    def write(cls, directory: Path, bundle: CertBundle) -> Files:
        directory.mkdir(parents=True, exist_ok=True)
        files = cls(directory / "tls.crt", directory / "tls.key")
        write_public(files.cert, bundle.cert_pem)
        write_private(files.key, bundle.key_pem)
        return files


@dataclass(frozen=True)
class Pki:
    ca: CertificateAuthority
    ca_path: Path
    server: Files
    agent: Files
    agent_pem: bytes
    foreign_ca_path: Path
    foreign_agent: Files


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("tls")
    ca = CertificateAuthority.init(root / "ca")
    foreign = CertificateAuthority.init(root / "foreign-ca", name="Someone Else's CA")
    agent = ca.issue("node-1", "agent")
    return Pki(
        ca=ca,
        ca_path=root / "ca" / "ca.crt",
        server=Files.write(
            root / "server", ca.issue("ctl-1", "controller", dns=["localhost"], ips=[LOOPBACK])
        ),
        agent=Files.write(root / "agent", agent),
        agent_pem=agent.cert_pem,
        foreign_ca_path=root / "foreign-ca" / "ca.crt",
        foreign_agent=Files.write(root / "foreign-agent", foreign.issue("node-1", "agent")),
    )


class RecordingHealth(health.HealthServicer):  # type: ignore[misc]
    """The standard health service, noting who each caller was."""

    def __init__(self) -> None:
        super().__init__()
        self.callers: list[PeerIdentity | None] = []

    def Check(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.callers.append(peer_identity_from_context(context))
        return super().Check(request, context)


@dataclass
class Running:
    port: int
    health: RecordingHealth


StartServer = Callable[..., Running]


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    servers: list[grpc.Server] = []

    def start(files: Files, ca_path: Path | None, *, require_client_auth: bool = True) -> Running:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        servers.append(server)
        recorder = RecordingHealth()
        health_pb2_grpc.add_HealthServicer_to_server(recorder, server)
        credentials = server_credentials(
            files.cert, files.key, ca_path, require_client_auth=require_client_auth
        )
        port = server.add_secure_port(f"{LOOPBACK}:0", credentials)
        server.start()
        return Running(port, recorder)

    yield start
    for server in servers:
        server.stop(None)


def check(port: int, credentials: grpc.ChannelCredentials) -> int:
    """One health check over a fresh connection; returns the serving status."""
    options = [("grpc.use_local_subchannel_pool", 1)]
    with grpc.secure_channel(f"{LOOPBACK}:{port}", credentials, options=options) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
    return int(response.status)


def refused(port: int, credentials: grpc.ChannelCredentials) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        check(port, credentials)
    code: grpc.StatusCode = caught.value.code()
    return code


def served_certificate(port: int, pki: Pki) -> x509.Certificate:
    """The certificate the server presents to a brand-new TLS connection."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(pki.ca_path)
    context.load_cert_chain(pki.agent.cert, pki.agent.key)
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((LOOPBACK, port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=LOOPBACK) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def server_only_certificate(pki: Pki, name: str) -> CertBundle:
    """A certificate from the test CA with serverAuth alone, built by hand."""
    ca_key = serialization.load_pem_private_key(
        (pki.ca_path.parent / "ca.key").read_bytes(), password=None
    )
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_cert = x509.load_pem_x509_certificate(pki.ca.certificate_pem)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "agent"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(ca_cert.not_valid_before_utc)
        .not_valid_after(ca_cert.not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return CertBundle(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


SERVING = health_pb2.HealthCheckResponse.SERVING


class TestMutualTls:
    def test_the_server_sees_who_calls(self, pki: Pki, start_server: StartServer) -> None:
        running = start_server(pki.server, pki.ca_path)

        status = check(
            running.port, channel_credentials(pki.ca_path, pki.agent.cert, pki.agent.key)
        )

        assert status == SERVING
        [caller] = running.health.callers
        assert caller is not None
        assert (caller.name, caller.role) == ("node-1", "agent")
        cert = x509.load_pem_x509_certificate(pki.agent_pem)
        assert caller.serial == format(cert.serial_number, "x")
        assert caller == peer_identity(pki.agent_pem)

    def test_a_client_without_a_certificate_is_refused(
        self, pki: Pki, start_server: StartServer
    ) -> None:
        running = start_server(pki.server, pki.ca_path)

        code = refused(running.port, channel_credentials(pki.ca_path))

        assert code == grpc.StatusCode.UNAVAILABLE
        assert running.health.callers == []

    def test_a_client_certificate_from_another_ca_is_refused(
        self, pki: Pki, start_server: StartServer
    ) -> None:
        running = start_server(pki.server, pki.ca_path)
        credentials = channel_credentials(
            pki.ca_path, pki.foreign_agent.cert, pki.foreign_agent.key
        )

        assert refused(running.port, credentials) == grpc.StatusCode.UNAVAILABLE
        assert running.health.callers == []

    def test_the_client_refuses_a_server_from_another_ca(
        self, pki: Pki, start_server: StartServer
    ) -> None:
        running = start_server(pki.server, pki.ca_path)
        credentials = channel_credentials(pki.foreign_ca_path, pki.agent.cert, pki.agent.key)

        assert refused(running.port, credentials) == grpc.StatusCode.UNAVAILABLE
        assert running.health.callers == []

    def test_a_client_certificate_meant_for_servers_is_refused(
        self, pki: Pki, start_server: StartServer, tmp_path: Path
    ) -> None:
        # The CA never issues this (agents get clientAuth); the TLS stack must enforce it too.
        running = start_server(pki.server, pki.ca_path)
        rogue = Files.write(tmp_path, server_only_certificate(pki, "node-1"))
        credentials = channel_credentials(pki.ca_path, rogue.cert, rogue.key)

        assert refused(running.port, credentials) == grpc.StatusCode.UNAVAILABLE
        assert running.health.callers == []

    def test_an_agent_certificate_cannot_pose_as_a_controller(
        self, pki: Pki, start_server: StartServer, tmp_path: Path
    ) -> None:
        # Even with the right address in it, a clientAuth-only certificate does not serve.
        impostor = Files.write(tmp_path, pki.ca.issue("node-2", "agent", ips=[LOOPBACK]))
        running = start_server(impostor, pki.ca_path)
        credentials = channel_credentials(pki.ca_path, pki.agent.cert, pki.agent.key)

        assert refused(running.port, credentials) == grpc.StatusCode.UNAVAILABLE
        assert running.health.callers == []

    def test_an_asyncio_server_sees_who_calls(self, pki: Pki) -> None:
        async def scenario() -> list[PeerIdentity | None]:
            server = grpc.aio.server()
            recorder = RecordingHealth()
            health_pb2_grpc.add_HealthServicer_to_server(recorder, server)
            credentials = server_credentials(
                pki.server.cert, pki.server.key, pki.ca_path, require_client_auth=True
            )
            port = server.add_secure_port(f"{LOOPBACK}:0", credentials)
            await server.start()
            try:
                client = channel_credentials(pki.ca_path, pki.agent.cert, pki.agent.key)
                async with grpc.aio.secure_channel(f"{LOOPBACK}:{port}", client) as channel:
                    stub = health_pb2_grpc.HealthStub(channel)
                    await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
            finally:
                await server.stop(None)
            return recorder.callers

        callers = asyncio.run(scenario())

        assert callers == [peer_identity(pki.agent_pem)]


class TestServerAuthenticationOnly:
    def test_callers_are_anonymous_even_with_a_certificate(
        self, pki: Pki, start_server: StartServer
    ) -> None:
        running = start_server(pki.server, None, require_client_auth=False)

        assert check(running.port, channel_credentials(pki.ca_path)) == SERVING
        with_cert = channel_credentials(pki.ca_path, pki.agent.cert, pki.agent.key)
        assert check(running.port, with_cert) == SERVING

        # grpc does not even request a client certificate on such a port.
        assert running.health.callers == [None, None]


class TestReload:
    def test_a_new_certificate_is_served_without_a_restart(
        self,
        pki: Pki,
        start_server: StartServer,
        tmp_path: Path,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        files = Files.write(tmp_path, pki.ca.issue("ctl-1", "controller", ips=[LOOPBACK]))
        old_serial = x509.load_pem_x509_certificate(files.cert.read_bytes()).serial_number
        running = start_server(files, pki.ca_path)
        mtls = channel_credentials(pki.ca_path, pki.agent.cert, pki.agent.key)
        assert served_certificate(running.port, pki).serial_number == old_serial

        # A half-written certificate: the server keeps the old one, and says so once.
        files.cert.write_bytes(b"-----BEGIN CERTIFICATE-----\nMIIB")
        with caplog.at_level(logging.WARNING, logger="backstop.security.tls"):
            assert served_certificate(running.port, pki).serial_number == old_serial
            assert check(running.port, mtls) == SERVING
        warnings = [r for r in caplog.records if "keeping the previous" in r.getMessage()]
        assert len(warnings) == 1

        # The new key lands before its certificate: still the old pair.
        renewed = pki.ca.issue("ctl-1", "controller", ips=[LOOPBACK])
        write_private(files.key, renewed.key_pem)
        assert served_certificate(running.port, pki).serial_number == old_serial

        write_public(files.cert, renewed.cert_pem)
        new_serial = x509.load_pem_x509_certificate(renewed.cert_pem).serial_number
        assert new_serial != old_serial
        assert served_certificate(running.port, pki).serial_number == new_serial
        assert served_certificate(running.port, pki).serial_number == new_serial

        # Clients are still authenticated under the new configuration.
        assert check(running.port, mtls) == SERVING
        assert refused(running.port, channel_credentials(pki.ca_path)) == (
            grpc.StatusCode.UNAVAILABLE
        )
        assert running.health.callers == [peer_identity(pki.agent_pem)] * 2


class TestInputs:
    def test_server_refuses_a_key_that_does_not_match(self, pki: Pki) -> None:
        with pytest.raises(InvalidInput, match="does not match"):
            server_credentials(
                pki.server.cert, pki.agent.key, pki.ca_path, require_client_auth=True
            )

    def test_client_authentication_needs_a_ca(self, pki: Pki) -> None:
        with pytest.raises(InvalidInput, match="CA"):
            server_credentials(pki.server.cert, pki.server.key, None, require_client_auth=True)

    def test_missing_files_are_named(self, pki: Pki, tmp_path: Path) -> None:
        with pytest.raises(InvalidInput, match=r"missing\.crt"):
            server_credentials(
                tmp_path / "missing.crt", pki.server.key, pki.ca_path, require_client_auth=True
            )
        with pytest.raises(InvalidInput, match="nope"):
            channel_credentials(tmp_path / "nope")

    def test_a_client_certificate_needs_its_key(self, pki: Pki) -> None:
        with pytest.raises(InvalidInput, match="both"):
            channel_credentials(pki.ca_path, cert_path=pki.agent.cert)


class _Context:
    def __init__(self, auth: dict[str, list[bytes]]) -> None:
        self._auth = auth

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._auth


class TestPeerIdentityFromContext:
    def test_no_certificate_is_no_identity(self) -> None:
        assert peer_identity_from_context(_Context({"transport_security_type": [b"ssl"]})) is None

    def test_a_certificate_without_a_role_is_no_identity(self, pki: Pki) -> None:
        context = _Context({"x509_pem_cert": [pki.ca.certificate_pem]})
        assert peer_identity_from_context(context) is None
