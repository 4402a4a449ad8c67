"""Enrolment of a node: trade a one-time token for a certificate of its own.

The node makes its key and a CSR locally (the private key never leaves the node), calls the
controller's enrolment port over server-authenticated TLS (trusting only the given CA), and
writes ``ca.crt``, ``node.crt`` and ``node.key`` (0600) into ``STATE_DIR/tls``.
"""

from __future__ import annotations

from pathlib import Path

import grpc

from backstop.api.v1 import enrolment_pb2, enrolment_pb2_grpc
from backstop.core.errors import InvalidInput, PermissionDenied, Unavailable
from backstop.security.peers import peer_identity
from backstop.security.pki import make_csr, write_private, write_public
from backstop.security.tls import channel_credentials

TIMEOUT_S = 15.0


def enrol(address: str, token: str, ca_path: Path, node_id: str, state_dir: Path) -> Path:
    """Enrol and write the node's TLS files; returns the directory they are in."""
    if not ca_path.is_file():
        raise InvalidInput(f"CA certificate {ca_path} does not exist")
    key_pem, csr_pem = make_csr(node_id)
    channel = grpc.secure_channel(address, channel_credentials(ca_path))
    try:
        stub = enrolment_pb2_grpc.EnrolmentStub(channel)
        request = enrolment_pb2.EnrollRequest(token=token, node_id=node_id, csr_pem=csr_pem)
        response = stub.Enroll(request, timeout=TIMEOUT_S)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.PERMISSION_DENIED:
            raise PermissionDenied(f"enrolment refused: {exc.details()}") from exc
        if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
            raise InvalidInput(f"enrolment refused: {exc.details()}") from exc
        raise Unavailable(f"cannot reach the enrolment port at {address}: {exc.details()}") from exc
    finally:
        channel.close()
    identity = peer_identity(response.certificate_pem)
    if identity.name != node_id or identity.role != "agent":
        raise InvalidInput("the controller returned a certificate for another identity")
    tls = state_dir / "tls"
    tls.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_public(tls / "ca.crt", ca_path.read_bytes())
    write_private(tls / "node.key", key_pem)
    write_public(tls / "node.crt", response.certificate_pem)
    return tls
