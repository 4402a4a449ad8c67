"""The CA's revocation list: signed by the CA, verified on load, re-read on change, never shrunk;
the CA's ledger of issued certificates; the controller's certificate read from a live channel."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from backstop.core.errors import InvalidInput, PermissionDenied
from backstop.security.crl import CRL_FILE, RevocationList, load_crl, revoke, revoked_serials
from backstop.security.issued import issued_to, record_issued
from backstop.security.peers import peer_identity
from backstop.security.pki import CertificateAuthority, write_public
from backstop.security.tls import channel_credentials, server_credentials
from backstop.uplink.peer_check import ControllerCertificateCheck, remote_certificates
from tests.support.secure import tampered_crl


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    CertificateAuthority.init(tmp_path / "ca")
    return tmp_path / "ca"


def _serial(pem: bytes) -> int:
    return int(peer_identity(pem).serial, 16)


def test_revoke_signs_a_list_that_verifies_and_only_grows(ca_dir: Path) -> None:
    ca = CertificateAuthority.load(ca_dir)
    a, b = ca.issue("node-a", "agent"), ca.issue("node-b", "agent")
    first = revoke(ca, ca_dir / CRL_FILE, [_serial(a.cert_pem)])
    assert (first.added, first.total, first.number) == ((_serial(a.cert_pem),), 1, 1)
    second = revoke(ca, ca_dir / CRL_FILE, [_serial(a.cert_pem), _serial(b.cert_pem)])
    assert (second.added, second.total, second.number) == ((_serial(b.cert_pem),), 2, 2)
    crl = load_crl((ca_dir / CRL_FILE).read_bytes(), ca.certificate_pem)
    assert revoked_serials(crl) == {_serial(a.cert_pem), _serial(b.cert_pem)}


def test_a_crl_not_signed_by_the_ca_is_refused(ca_dir: Path, tmp_path: Path) -> None:
    ca = CertificateAuthority.load(ca_dir)
    revoke(ca, ca_dir / CRL_FILE, [_serial(ca.issue("node-a", "agent").cert_pem)])
    good = (ca_dir / CRL_FILE).read_bytes()
    with pytest.raises(InvalidInput, match="NOT signed by the CA"):
        load_crl(tampered_crl(good), ca.certificate_pem)
    other = CertificateAuthority.init(tmp_path / "other", name="Other CA")
    revoke(other, tmp_path / "other" / CRL_FILE, [1])
    with pytest.raises(InvalidInput, match="not by the trusted CA"):
        load_crl((tmp_path / "other" / CRL_FILE).read_bytes(), ca.certificate_pem)
    (tmp_path / "bad.pem").write_bytes(tampered_crl(good))
    with pytest.raises(InvalidInput, match="NOT signed by the CA"):
        RevocationList(tmp_path / "bad.pem", ca_dir / "ca.crt")
    with pytest.raises(InvalidInput, match="NOT signed by the CA"):  # nor added to
        revoke(ca, tmp_path / "bad.pem", [2])


def test_a_daemons_list_is_reread_and_a_bad_copy_keeps_the_old_one(
    ca_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ca = CertificateAuthority.load(ca_dir)
    a, b = ca.issue("node-a", "agent"), ca.issue("node-b", "agent")
    held = tmp_path / "daemon" / CRL_FILE
    held.parent.mkdir()
    listed = RevocationList(held, ca_dir / "ca.crt")
    assert len(listed) == 0  # no file yet: nothing revoked
    revoke(ca, ca_dir / CRL_FILE, [_serial(a.cert_pem)])
    write_public(held, (ca_dir / CRL_FILE).read_bytes())
    assert listed.is_revoked(peer_identity(a.cert_pem).serial)
    assert not listed.is_revoked(_serial(b.cert_pem))

    with caplog.at_level(logging.ERROR, "backstop.security.crl"):
        write_public(held, tampered_crl(held.read_bytes()))
        assert listed.is_revoked(_serial(a.cert_pem))
    assert "NOT signed by the CA" in caplog.text

    caplog.clear()
    shrunk = tmp_path / "shrunk.pem"  # signed by the CA, but without node-a...
    revoke(ca, shrunk, [_serial(b.cert_pem)])
    with caplog.at_level(logging.ERROR, "backstop.security.crl"):
        write_public(held, shrunk.read_bytes())
        assert listed.is_revoked(_serial(a.cert_pem))  # ...cannot un-revoke it
        assert not listed.is_revoked(_serial(b.cert_pem))
    assert "drops 1 serial" in caplog.text

    held.unlink()
    assert listed.is_revoked(_serial(a.cert_pem))  # a deleted copy changes nothing


def test_the_ledger_names_what_the_ca_issued(ca_dir: Path) -> None:
    ca = CertificateAuthority.load(ca_dir)
    first, second = ca.issue("node-a", "agent"), ca.issue("node-a", "agent")
    person = ca.issue("node-a", "client")
    for bundle in (first, second, person):
        record_issued(ca_dir, bundle.cert_pem)
    assert [c.serial for c in issued_to(ca_dir, "node-a", "agent")] == [
        _serial(first.cert_pem),
        _serial(second.cert_pem),
    ]
    assert [c.serial for c in issued_to(ca_dir, "node-a", "client")] == [_serial(person.cert_pem)]


def test_the_controller_certificate_is_read_from_the_live_connection(
    ca_dir: Path, tmp_path: Path
) -> None:
    ca = CertificateAuthority.load(ca_dir)
    server_cert = ca.issue("controller", "controller", dns=["localhost"], ips=["127.0.0.1"])
    client_cert = ca.issue("node-a", "agent")
    for stem, bundle in (("server", server_cert), ("client", client_cert)):
        write_public(tmp_path / f"{stem}.crt", bundle.cert_pem)
        write_public(tmp_path / f"{stem}.key", bundle.key_pem)
    held = tmp_path / CRL_FILE
    revoke(ca, held, [_serial(client_cert.cert_pem)])  # not empty, but not the controller
    check = ControllerCertificateCheck(RevocationList(held, ca_dir / "ca.crt"))

    async def scenario() -> None:
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
        creds = server_credentials(
            tmp_path / "server.crt",
            tmp_path / "server.key",
            ca_dir / "ca.crt",
            require_client_auth=True,
        )
        port = server.add_secure_port("127.0.0.1:0", creds)
        await server.start()
        address = f"127.0.0.1:{port}"
        channel_creds = channel_credentials(
            ca_dir / "ca.crt", tmp_path / "client.crt", tmp_path / "client.key"
        )
        try:
            async with grpc.aio.secure_channel(address, channel_creds) as channel:
                await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
                seen = [_serial(pem) for pem in remote_certificates(address)]
                assert seen == [_serial(server_cert.cert_pem)]
                check(address)  # not revoked: accepted
                revoke(ca, held, [_serial(server_cert.cert_pem)])
                with pytest.raises(PermissionDenied, match="on the CA's revocation list"):
                    check(address)
            with pytest.raises(PermissionDenied, match="cannot read the certificate"):
                check("127.0.0.1:1")  # no connection there: fail closed
        finally:
            await server.stop(0)

    asyncio.run(scenario())


def test_the_cluster_and_cloud_agents_check_the_controller_against_the_list(
    ca_dir: Path, tmp_path: Path
) -> None:
    """The operator's cluster agent and the cloud agent join through ``stateless_session``:
    it carries the same controller check as the node agent, on ``TLS_DIR/crl.pem``."""
    from backstop.core.models import CommandAck, NodeInfo, TargetState
    from backstop.uplink.reporting import stateless_session

    ca = CertificateAuthority.load(ca_dir)
    controller = ca.issue("controller", "controller", dns=["localhost"])
    tls = tmp_path / "tls"
    tls.mkdir()
    (tls / "ca.crt").write_bytes(ca.certificate_pem)
    node = ca.issue("k8s-x", "agent")
    (tls / "node.crt").write_bytes(node.cert_pem)
    (tls / "node.key").write_bytes(node.key_pem)
    revoke(ca, tls / CRL_FILE, [_serial(controller.cert_pem)])

    async def on_command(command: object) -> CommandAck:
        return CommandAck("cor-00000000", 0, TargetState.REFUSED)

    def session(insecure: bool) -> object:
        return stateless_session(
            "127.0.0.1:1", lambda: NodeInfo("k8s-x"), on_command,
            insecure=insecure, tls=tls, state_dir=tmp_path / "state", reconnect_max_s=1.0,
        )  # fmt: skip

    check = session(False)._peer_check  # type: ignore[attr-defined]
    assert isinstance(check, ControllerCertificateCheck)
    assert check.revocations.is_revoked(peer_identity(controller.cert_pem).serial)
    with pytest.raises(PermissionDenied, match="cannot read the certificate"):
        check("127.0.0.1:1")  # no live channel there: fail closed, never open
    assert session(True)._peer_check is None  # type: ignore[attr-defined]
