"""What a link to the controller needs before it may start: its TLS identity and trust policy.

Shared by the node agent and the Kubernetes operator (both join the controller the same way):
plaintext only to a loopback controller and only when asked for; otherwise a node certificate
(``ca.crt``, ``node.crt``, ``node.key`` from ``backstop agent enroll``) and a trust policy to
verify every command against.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import grpc

from backstop.core.errors import InvalidInput
from backstop.core.netaddr import require_loopback_for_plaintext
from backstop.security.tls import channel_credentials

TLS_FILES = ("ca.crt", "node.crt", "node.key")


class LinkSettings(Protocol):
    """The settings an agent's link to the controller is made from."""

    @property
    def controller(self) -> str: ...
    @property
    def insecure(self) -> bool: ...
    @property
    def tls_dir(self) -> Path | None: ...
    @property
    def trust_policy(self) -> Path | None: ...
    @property
    def state_dir(self) -> Path: ...
    @property
    def reconnect_max_s(self) -> float: ...


def link_tls_dir(tls_dir: Path | None, state_dir: Path) -> Path:
    """Where the link's certificate lives: given, or ``STATE_DIR/tls`` (where enrol writes)."""
    return tls_dir or state_dir / "tls"


def check_link_security(settings: LinkSettings, *, who: str, enrol_hint: str) -> None:
    """Refuse to start without what the chosen mode needs, saying what to do."""
    if settings.insecure:
        require_loopback_for_plaintext(settings.controller)
        return
    tls = link_tls_dir(settings.tls_dir, settings.state_dir)
    for name in TLS_FILES:
        if not (tls / name).is_file():
            raise InvalidInput(
                f"{tls / name} is missing: enrol the {who} first ({enrol_hint}), "
                "or pass --insecure for a plaintext loopback controller"
            )
    trust_policy = settings.trust_policy
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
