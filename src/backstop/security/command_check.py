"""The check every receiver of a command makes itself, whatever the controller says.

A compromised or impersonated controller must not make a node agent or the Kubernetes
operator act. A command is refused when it has expired, or, with a trust policy, when the
signatures over its exact spec bytes do not verify against the operators' keys, the issuer
may not issue, or the distinct approvers fall short of the quorum for its action.

Replay protection depends on the receiver's own state: the node agent adds sequence and
correction-id checks (``backstop.agent.verifier``); the operator needs none, because a command
becomes the Correction named after its id, so a redelivery finds that Correction.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from backstop.core.models import Command
from backstop.security import quorum
from backstop.security.identities import TrustPolicyFile


class CommandCheck:
    """Why a command must be refused, if it must."""

    def __init__(
        self, policy: TrustPolicyFile | None, clock: Callable[[], float] = time.time
    ) -> None:
        self._policy = policy
        self._clock = clock

    def problem(self, command: Command) -> str:
        """The reason to refuse ``command``; empty when it may act."""
        spec = command.spec
        now = self._clock()
        if spec.expires_at_s <= now:
            return f"expired {now - spec.expires_at_s:.0f} s ago"
        if self._policy is None:
            return ""
        verdict = quorum.check(
            command.spec_bytes,
            issuer=spec.issuer,
            action=spec.action.value,
            signatures=command.signatures,
            policy=self._policy.current(),
        )
        return "" if verdict.ok else verdict.reason
