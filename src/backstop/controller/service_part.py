"""What the groups of control API calls kept in their own modules (policies, alerts,
incidents) share: they are mixins of :class:`~backstop.controller.control_api.ControlService`,
and find and check their caller through it."""

from __future__ import annotations

from typing import Any

from backstop.controller.authz import Caller
from backstop.security.identities import Role


class ServicePart:
    """A group of control API calls, mixed into the service that supplies the caller check."""

    def _caller(self, context: Any, role: Role, what: str, claimed: str = "") -> Caller:
        """The caller of ``context`` when they may do ``what`` as ``role`` (a refusal is
        raised, and audited, otherwise)."""
        raise NotImplementedError  # supplied by ControlService
