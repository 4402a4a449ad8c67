"""The controller's certificate, checked against the CA's revocation list on every connection.

grpc Python gives a client no view of the server's certificate, but gRPC's channelz (on by
default) records, for every connected socket, the certificate the peer presented in that very
handshake. :class:`ControllerCertificateCheck` reads it for the sockets of the channel to the
controller and refuses the connection when a certificate there is on the revocation list, or
when the list is not empty and no certificate can be read (fail closed).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

from backstop.core.errors import PermissionDenied
from backstop.security.crl import CRL_FILE, RevocationList
from backstop.security.peers import peer_identity

log = logging.getLogger(__name__)

_Lookup = Callable[..., str]


def _channelz() -> tuple[_Lookup, _Lookup, _Lookup] | None:
    try:
        from grpc._cython import cygrpc
    except ImportError:  # pragma: no cover - grpc always ships it
        return None
    names = ("channelz_get_top_channels", "channelz_get_subchannel", "channelz_get_socket")
    found = [getattr(cygrpc, name, None) for name in names]
    if any(f is None for f in found):
        return None
    return cast(tuple[_Lookup, _Lookup, _Lookup], tuple(found))


def remote_certificates(address: str) -> list[bytes]:
    """PEM certificates presented by the peers of this process's channels to ``address``."""
    api = _channelz()
    if api is None:
        return []
    top_channels, subchannel, socket = api
    found: list[bytes] = []
    for channel in _top_channels(top_channels):
        target = str(channel.get("data", {}).get("target", ""))
        if target.rsplit("/", 1)[-1] != address:
            continue
        for ref in channel.get("subchannelRef", []):
            sub = json.loads(subchannel(int(ref["subchannelId"]))).get("subchannel", {})
            for sock_ref in sub.get("socketRef", []):
                data = json.loads(socket(int(sock_ref["socketId"]))).get("socket", {})
                remote = data.get("security", {}).get("tls", {}).get("remoteCertificate", "")
                if remote:
                    found.append(base64.b64decode(remote))
    return found


def _top_channels(lookup: _Lookup) -> Iterator[dict[str, Any]]:
    start = 0
    while True:
        page = json.loads(lookup(start))
        channels = page.get("channel", [])
        yield from channels
        if page.get("end", True) or not channels:
            return
        start = int(channels[-1]["ref"]["channelId"]) + 1


class ControllerCertificateCheck:
    """Refuses a controller whose certificate is on the CA's revocation list."""

    def __init__(self, revocations: RevocationList) -> None:
        self.revocations = revocations

    def __call__(self, address: str) -> None:
        """Check the connection to ``address``; :class:`PermissionDenied` to refuse it."""
        if len(self.revocations) == 0:
            return
        certificates = remote_certificates(address)
        if not certificates:
            raise PermissionDenied(
                f"cannot read the certificate of controller {address} to check it against the "
                f"revocation list {self.revocations.path}; refusing the connection"
            )
        for pem in certificates:
            peer = peer_identity(pem)
            if self.revocations.is_revoked(peer.serial):
                raise PermissionDenied(
                    f"controller {address} presented certificate {peer.serial[:16]} of "
                    f"{peer.name}, which is on the CA's revocation list "
                    f"({self.revocations.path}); refusing it"
                )


def controller_check(
    insecure: bool, tls: Path, crl: Path | None = None
) -> ControllerCertificateCheck | None:
    """The check every agent (node, cluster, cloud) makes of the controller it reached:
    against ``crl`` or ``TLS_DIR/crl.pem``, verified with ``TLS_DIR/ca.crt``; none in open mode."""
    if insecure:
        return None
    return ControllerCertificateCheck(RevocationList(crl or tls / CRL_FILE, tls / "ca.crt"))
