"""The operator's settings: one typed section, a docstring on every field.

The CLI builds this from flags; nothing here reads the environment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from backstop.core.errors import InvalidInput

_CLUSTER_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class OperatorSettings:
    kubeconfig: Path | None = None
    """Kubeconfig to use; None: in-cluster credentials in a pod, else the default kubeconfig."""
    cluster_name: str = "default"
    """This cluster's name; the controller knows it as node ``k8s-<cluster_name>``."""
    controller: str = ""
    """Controller gRPC address (HOST:PORT); empty: Correction resources only, no controller."""
    insecure: bool = False
    """Plaintext gRPC to a loopback controller and unsigned commands (development only)."""
    tls_dir: Path | None = None
    """``ca.crt``, ``node.crt``, ``node.key`` of node ``k8s-<cluster_name>`` (from ``backstop
    agent enroll``); default ``STATE_DIR/tls``."""
    trust_policy: Path | None = None
    """The operators' keys and quorum rules that every controller command is verified against."""
    state_dir: Path = Path("/var/lib/backstop-operator")
    """Where the report spool lives (reports wait there while the controller is away)."""
    resync_s: float = 30.0
    """Every Correction is reconciled at least this often (watches make it sooner)."""
    report_interval_s: float = 10.0
    """Seconds between reports, until the controller's Welcome says otherwise."""
    ack_wait_s: float = 60.0
    """How long a controller command may take to settle before it is acknowledged as failed."""
    reconnect_max_s: float = 10.0
    """Upper bound of the controller reconnect backoff."""
    watch_timeout_s: int = 30
    """Length of one watch request; a stopped operator's watch threads end within it."""

    @property
    def node_id(self) -> str:
        """The node id the controller knows this cluster by."""
        return f"k8s-{self.cluster_name}"

    def validate(self) -> None:
        """Raise :class:`InvalidInput` for settings that cannot work."""
        if not _CLUSTER_NAME.match(self.cluster_name):
            raise InvalidInput(
                f"cluster name {self.cluster_name!r} must be lowercase letters, digits, '-' or "
                "'.', at most 63 characters"
            )
        if self.resync_s <= 0 or self.report_interval_s <= 0 or self.ack_wait_s <= 0:
            raise InvalidInput("resync, report interval and ack wait must be positive")
