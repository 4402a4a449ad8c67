"""The Backstop error tree.

Every error Backstop raises on purpose derives from :class:`BackstopError`;
third-party errors are wrapped with the original attached (``raise X from exc``).
``temporary`` errors may succeed when retried after ``retry_after`` seconds;
the others are permanent and retrying them changes nothing::

    BackstopError
    ├── InvalidInput          bad flag, selector, scope, parameter or message (permanent)
    ├── NotFound              unknown node, workload or correction id (permanent)
    ├── Conflict              the request contradicts the current state (permanent)
    ├── PermissionDenied      the caller's identity or role does not allow it (permanent)
    ├── StoreError            the database failed (temporary)
    ├── Unavailable           a peer (controller, agent, NVML) cannot be reached (temporary)
    ├── CollectorError        one collector failed one sample (temporary)
    └── ActuationError        an action could not be applied to a workload (permanent)
        └── NotSupported      the mechanism is missing here (no cgroup, no NVML, ...)
"""

from __future__ import annotations


class BackstopError(Exception):
    """Base of every error Backstop raises on purpose."""

    temporary: bool = False
    """Whether retrying the same operation later may succeed."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class InvalidInput(BackstopError):
    """A flag, selector, scope, parameter or message is malformed; nothing was changed."""


class NotFound(BackstopError):
    """The named node, workload or correction does not exist."""


class Conflict(BackstopError):
    """The request contradicts the current state (e.g. resuming a correction twice)."""


class PermissionDenied(BackstopError):
    """The caller is not allowed to do this (unknown identity, too low a role, bad signature)."""


class StoreError(BackstopError):
    """The database failed; the operation was not recorded."""

    temporary = True


class Unavailable(BackstopError):
    """A peer (controller, agent, NVML library) cannot be reached right now."""

    temporary = True


class CollectorError(BackstopError):
    """A collector could not produce this sample; the next one may succeed."""

    temporary = True


class ActuationError(BackstopError):
    """An action could not be applied to a workload."""


class NotSupported(ActuationError):
    """The mechanism an action needs is missing here (no cgroup v2, no NVML, ...)."""
