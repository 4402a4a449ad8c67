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


EXIT_INCOMPLETE = 1
"""The CLI's exit code for any other error, and for a correction that did not fully apply."""


class ErrorKind:
    """One row of the table: an error class, the gRPC status it travels as, the CLI's exit code.

    The status is named, not imported, so the core stays free of transport libraries.
    """

    __slots__ = ("error", "exit_code", "status")

    def __init__(self, error: type[BackstopError], status: str, exit_code: int) -> None:
        self.error = error
        self.status = status
        self.exit_code = exit_code


ERROR_TABLE: tuple[ErrorKind, ...] = (
    ErrorKind(InvalidInput, "INVALID_ARGUMENT", 2),
    ErrorKind(Unavailable, "UNAVAILABLE", 3),
    ErrorKind(NotFound, "NOT_FOUND", 4),
    ErrorKind(Conflict, "FAILED_PRECONDITION", 5),
    ErrorKind(PermissionDenied, "PERMISSION_DENIED", 6),
)
"""The one mapping of errors to gRPC statuses and exit codes; the controller, the client and
the CLI all read it (the README's exit-code table is checked against it)."""


def kind_of(exc: BackstopError) -> ErrorKind | None:
    """The table's row for an error (subclasses included), or None."""
    for kind in ERROR_TABLE:
        if isinstance(exc, kind.error):
            return kind
    return None


def status_name_for(exc: BackstopError) -> str:
    """The gRPC status name an error is sent as; unlisted errors are UNAVAILABLE when
    temporary (retrying may help) and INTERNAL otherwise."""
    kind = kind_of(exc)
    if kind is not None:
        return kind.status
    return "UNAVAILABLE" if exc.temporary else "INTERNAL"


def exit_code_for(exc: BackstopError) -> int:
    """The CLI's exit code for an error."""
    kind = kind_of(exc)
    return kind.exit_code if kind is not None else EXIT_INCOMPLETE


def error_for_status(status: str) -> type[BackstopError]:
    """The error class a received gRPC status name becomes."""
    for kind in ERROR_TABLE:
        if kind.status == status:
            return kind.error
    return BackstopError
