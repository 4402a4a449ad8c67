"""What a link to the controller needs before it may start: its TLS identity and trust policy.

Shared by the node agent and the Kubernetes operator (both join the controller the same way):
plaintext only to a loopback controller and only when asked for; otherwise a node certificate
(``ca.crt``, ``node.crt``, ``node.key`` from ``backstop agent enroll``) and a trust policy to
verify every command against.
"""

from __future__ import annotations

from pathlib import Path

import grpc

from backstop.core.errors import InvalidInput
from backstop.core.netaddr import require_loopback_for_plaintext
from backstop.security.tls import channel_credentials

TLS_FILES = ("ca.crt", "node.crt", "node.key")


def link_tls_dir(tls_dir: Path | None, state_dir: Path) -> Path:
    """Where the link's certificate lives: given, or ``STATE_DIR/tls`` (where enrol writes)."""
    return tls_dir or state_dir / "tls"


def check_link_security(
    *,
    controller: str,
    insecure: bool,
    tls: Path,
    trust_policy: Path | None,
    who: str,
    enrol_hint: str,
) -> None:
    """Refuse to start without what the chosen mode needs, saying what to do."""
    if insecure:
        require_loopback_for_plaintext(controller)
        return
    for name in TLS_FILES:
        if not (tls / name).is_file():
            raise InvalidInput(
                f"{tls / name} is missing: enrol the {who} first ({enrol_hint}), "
                "or pass --insecure for a plaintext loopback controller"
            )
    if trust_policy is None or not trust_policy.is_file():
        raise InvalidInput(
            f"the {who} needs --trust-policy: the operators' keys that every command is "
            "verified against"
        )


def link_credentials(insecure: bool, tls: Path) -> grpc.ChannelCredentials | None:
    """Channel credentials for the link (None: plaintext, already checked to be loopback)."""
    if insecure:
        return None
    return channel_credentials(*(tls / name for name in TLS_FILES))
