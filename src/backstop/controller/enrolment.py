"""Node enrolment: a one-time, expiring token buys a node its own certificate.

Served on its own port with server-authenticated TLS (grpc Python cannot make client
certificates optional on one port). The node sends a CSR; its private key never leaves it.
The controller checks the token (unused, unexpired, issued for this node id), records the
decision in the audit chain, signs the CSR with the CA, forcing CN=node id and OU=agent, and
records the certificate so revocation can tell it apart from older ones, in the store and in
the CA's ledger beside the key (so it can go on the CA's revocation list after the store is
lost).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import grpc

from backstop.api.v1 import enrolment_pb2, enrolment_pb2_grpc
from backstop.controller.corrections import CorrectionsEngine
from backstop.controller.refusals import RefusalLog
from backstop.controller.store.base import Store
from backstop.core.errors import BackstopError, InvalidInput, PermissionDenied
from backstop.security.issued import record_issued
from backstop.security.peers import peer_identity, token_hash
from backstop.security.pki import CertificateAuthority
from backstop.wire import checks

log = logging.getLogger(__name__)

AGENT_CERT_DAYS = 90
MAX_CSR_BYTES = 16 * 1024


class EnrolmentService(enrolment_pb2_grpc.EnrolmentServicer):  # type: ignore[misc]
    def __init__(
        self,
        store: Store,
        engine: CorrectionsEngine,
        ca: CertificateAuthority,
        ca_dir: Path,
        refusals: RefusalLog | None = None,
    ) -> None:
        self._store = store
        self._engine = engine
        self._ca = ca
        self._ca_dir = ca_dir
        self._refusals = refusals if refusals is not None else RefusalLog(engine.records.audit)

    async def Enroll(
        self, request: enrolment_pb2.EnrollRequest, context: Any
    ) -> enrolment_pb2.EnrollResponse:
        peer = context.peer()
        try:
            node_id = checks.node_id_text(request.node_id)
            if len(request.csr_pem) > MAX_CSR_BYTES:
                raise InvalidInput("the CSR is too large")
            if not self._store.use_enrolment_token(token_hash(request.token), node_id, time.time()):
                raise PermissionDenied(
                    "enrolment token unknown, expired, already used, or issued for another node"
                )
            self._engine.records.audit(node_id, "node.enrol", node_id, peer=peer)
            cert_pem = self._ca.sign_csr(
                request.csr_pem, name=node_id, role="agent", valid_days=AGENT_CERT_DAYS
            )
        except BackstopError as exc:
            # the port is unauthenticated: the caller is only its address, and the node id it
            # claims is its own word; refusals are counted per address and reason
            self._refusals.refuse(
                _host_of(peer),
                "enrolment.refused",
                request.node_id[:128] or "-",
                refusal=type(exc).__name__,
                reason=exc.message,
                peer=peer,
            )
            code = (
                grpc.StatusCode.PERMISSION_DENIED
                if isinstance(exc, PermissionDenied)
                else grpc.StatusCode.INVALID_ARGUMENT
            )
            await context.abort(code, exc.message)
            raise
        identity = peer_identity(cert_pem)
        record_issued(self._ca_dir, cert_pem)  # revocable without the store (crl.py)
        self._store.record_certificate(
            identity.serial, node_id, time.time(), identity.not_after.timestamp()
        )
        log.info("node enrolled", extra={"node": node_id, "serial": identity.serial})
        return enrolment_pb2.EnrollResponse(
            certificate_pem=cert_pem, ca_pem=self._ca.certificate_pem
        )


def _host_of(peer: str) -> str:
    """``ipv4:10.0.0.7:51234`` -> ``ipv4:10.0.0.7`` (the source port changes every call)."""
    return peer.rsplit(":", 1)[0] if peer.count(":") >= 2 else peer
