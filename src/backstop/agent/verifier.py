"""The agent's own check of every command, independent of the controller.

A compromised or impersonated controller must not be able to make an agent act. Before
anything happens, a command is refused when:

- it has expired;
- its sequence number is not above the last one this agent processed (replayed or reordered);
- its correction was already handled here (a replay under a new sequence number);
- with a trust policy: the signatures over the exact spec bytes do not verify against the
  agent's trusted keys, the issuer may not issue, or the distinct approvers fall short of the
  quorum for the action.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from backstop.agent.state import AgentState
from backstop.core.models import Command
from backstop.security.command_check import CommandCheck
from backstop.security.identities import TrustPolicyFile


class CommandVerifier:
    def __init__(
        self, policy: TrustPolicyFile | None, clock: Callable[[], float] = time.time
    ) -> None:
        self._check = CommandCheck(policy, clock)
        self._policy = policy

    @property
    def enforcing_signatures(self) -> bool:
        return self._policy is not None

    def problem(self, command: Command, state: AgentState) -> str:
        """Why the command must be refused; empty when it may act."""
        expired_or_unsigned = self._check.problem(command)
        if expired_or_unsigned.startswith("expired"):
            return expired_or_unsigned
        spec = command.spec
        if command.sequence <= state.last_command_sequence:
            return (
                f"replayed or out-of-order command: sequence {command.sequence} is not above "
                f"{state.last_command_sequence}"
            )
        if spec.correction_id in state.corrections:
            return f"replay of correction {spec.correction_id}, which was already handled"
        return expired_or_unsigned
