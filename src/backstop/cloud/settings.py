"""The cloud agent's settings: one typed section, a docstring on every field.

The CLI builds this from flags; nothing here reads the environment (the cloud SDKs read their
own credentials: the AWS credential chain, Google application default credentials).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from backstop.core.errors import InvalidInput

PROVIDERS = ("aws", "gcp")
_NODE_ID = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class CloudSettings:
    provider: str
    """``aws`` or ``gcp``."""
    controller: str
    """Controller gRPC address (HOST:PORT, or several replicas separated by commas)."""
    regions: tuple[str, ...] = ()
    """AWS regions to watch."""
    project: str = ""
    """GCP project id."""
    zones: tuple[str, ...] = ()
    """GCP zones to watch."""
    endpoint_url: str = ""
    """The cloud API's address, for a private endpoint or a local test server."""
    node_id: str = ""
    """What the controller calls this account; default ``<provider>-<account or project>``."""
    insecure: bool = False
    """Plaintext gRPC to a loopback controller and unsigned commands (development only)."""
    tls_dir: Path | None = None
    """``ca.crt``, ``node.crt``, ``node.key`` from ``backstop agent enroll``; default
    ``STATE_DIR/tls``."""
    trust_policy: Path | None = None
    """The operators' keys and quorum rules that every command is verified against."""
    state_dir: Path = Path("/var/lib/backstop-cloud")
    """The report spool and the journal of every action taken."""
    report_interval_s: float = 30.0
    """Seconds between inventories, until the controller's Welcome says otherwise. Cloud APIs
    are rate-limited, so this is longer than a node agent's."""
    reconnect_max_s: float = 10.0
    """Upper bound of the controller reconnect backoff."""

    def validate(self) -> None:
        """Raise :class:`InvalidInput` for settings that cannot work."""
        if self.provider not in PROVIDERS:
            raise InvalidInput(f"--provider must be one of {', '.join(PROVIDERS)}")
        if self.provider == "aws" and not self.regions:
            raise InvalidInput("--provider aws needs at least one --region")
        if self.provider == "gcp" and not (self.project and self.zones):
            raise InvalidInput("--provider gcp needs --project and at least one --zone")
        if self.node_id and not _NODE_ID.match(self.node_id):
            raise InvalidInput(
                f"node id {self.node_id!r} must be lowercase letters, digits, '-' or '.'"
            )
        if self.report_interval_s <= 0:
            raise InvalidInput("--report-interval must be positive")
