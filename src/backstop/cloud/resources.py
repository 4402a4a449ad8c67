"""What every provider offers the cloud agent: resources, and holding them stopped.

A **hold** is a mark on the resource itself (an EC2 or SageMaker tag, a Compute Engine label)
named after the correction that holds it, valued with that correction's action. The marks are
the whole state: a restarted cloud agent reads them back, keeps held resources stopped, and
knows what a resume may start again. A resource is released (started) only when its last hold
goes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from backstop.core.errors import InvalidInput
from backstop.core.models import Action

HOLD_PREFIX = "backstop-hold-"
"""Marks are ``backstop-hold-<correction id>``: valid as a tag key and as a GCE label key."""

_HOLD_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,48}$")

RUNNING = "running"
STOPPED = "stopped"
STARTING = "starting"
STOPPING = "stopping"
GONE = "gone"


@dataclass(frozen=True, slots=True)
class CloudResource:
    """One GPU instance or model endpoint, provider-neutral."""

    workload_id: str
    """``<provider>/<region or zone>/<kind>/<name>``: unique within the account."""
    kind: str
    """``ec2-instance``, ``sagemaker-endpoint`` or ``gce-instance``."""
    name: str
    location: str
    state: str
    """One of RUNNING, STARTING, STOPPING, STOPPED, GONE."""
    instance_type: str
    gpus: tuple[str, ...]
    """One entry per GPU: its model (``A100``), as far as the provider says."""
    tags: Mapping[str, str] = field(default_factory=dict)
    created_at_s: float = 0.0
    ref: str = ""
    """The provider's own handle where the name is not enough (a SageMaker endpoint's ARN, a
    Compute Engine instance's label fingerprint)."""
    group: str = ""
    """The instance group that manages it, if any (Compute Engine: the ``created-by`` URL)."""

    @property
    def holds(self) -> dict[str, Action]:
        """Correction id -> action, for every hold mark on the resource."""
        found = {}
        for key, value in self.tags.items():
            if key.startswith(HOLD_PREFIX):
                try:
                    found[key.removeprefix(HOLD_PREFIX)] = Action(value)
                except ValueError:
                    found[key.removeprefix(HOLD_PREFIX)] = Action.PAUSE
        return found

    @property
    def active(self) -> bool:
        """Running or on its way there."""
        return self.state in (RUNNING, STARTING)


def hold_key(correction_id: str) -> str:
    """The mark of ``correction_id``; refused if it cannot be a tag and label key."""
    if not _HOLD_ID.match(correction_id):
        raise InvalidInput(
            f"correction id {correction_id!r} cannot name a cloud hold mark "
            "(lowercase letters, digits, '-' or '_', at most 49 characters)"
        )
    return HOLD_PREFIX + correction_id


class Provider(Protocol):
    """One cloud account, as the cloud agent drives it. Calls block (run them in a thread)."""

    name: str
    """``aws`` or ``gcp``."""
    account: str
    """The AWS account id or the GCP project id."""

    def resources(self) -> Sequence[CloudResource]:
        """Every GPU instance and model endpoint the agent was configured to watch."""
        ...

    def mark(self, resource: CloudResource, marks: Mapping[str, str]) -> None:
        """Set tags or labels on ``resource`` (before it is stopped)."""
        ...

    def unmark(self, resource: CloudResource, keys: Sequence[str]) -> None:
        """Remove tags or labels from ``resource``."""
        ...

    def stop(self, resource: CloudResource) -> str:
        """Stop it (an endpoint: scale to zero); say what was done."""
        ...

    def start(self, resource: CloudResource) -> str:
        """Start what ``stop`` stopped (an endpoint: the capacity it had); say what was done."""
        ...
