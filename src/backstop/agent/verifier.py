"""The agent's own check of every command, independent of the controller.

A compromised or impersonated controller must not be able to make an agent act, nor make it
refuse later valid commands. Replay protection rests on signed data only: the delivery
sequence number is not signed, so it orders delivery and nothing else. Before anything
happens, a command is refused when:

- it has expired, its signed lifetime is longer than seven days, or it was signed as created
  more than five minutes in the future (``security.command_check``);
- its correction was already handled here (kept until its signed expiry, see
  ``backstop.agent.state``): a replay, whatever sequence number it comes with;
- ``reverts`` is set on anything but a resume, or a resume names nothing to revert;
- a resume's scope differs from the scope of the correction it reverts;
- with a trust policy: the signatures over the exact spec bytes do not verify against the
  agent's trusted keys, the issuer may not issue, or the distinct approvers fall short of the
  quorum for the action (for a resume: the quorum for undoing the action of the correction
  it reverts, which this agent knows from its own state);
- for a correction a policy started, the policy it carries does not authorise it
  (:mod:`backstop.agent.policy_authority`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from backstop.agent.policy_authority import authority_problem
from backstop.agent.state import AgentState
from backstop.core.models import Action, Command
from backstop.security.command_check import NOTHING_HERE, CommandCheck
from backstop.security.identities import TrustPolicyFile
from backstop.wire import correction_convert


class CommandVerifier:
    def __init__(
        self, policy: TrustPolicyFile | None, clock: Callable[[], float] = time.time
    ) -> None:
        self._check = CommandCheck(policy, clock)
        self._policy = policy
        self._clock = clock

    @property
    def enforcing_signatures(self) -> bool:
        return self._check.enforcing_signatures

    def problem(self, command: Command, state: AgentState) -> str:
        """Why the command must be refused; empty when it may act."""
        form = self._check.form_problem(command)
        if form:
            return form
        spec = command.spec
        if spec.correction_id in state.corrections:
            return f"replay of correction {spec.correction_id}, which was already handled"
        if spec.policy_digest or command.authority is not None:
            trust = self._policy.current() if self._policy is not None else None
            return authority_problem(command, trust, self._clock())
        undone = NOTHING_HERE
        if spec.action is Action.RESUME:
            target = state.corrections.get(spec.reverts)
            if target is not None:
                scope = correction_convert.spec_from_bytes(bytes.fromhex(target.spec)).scope
                if scope != spec.scope:
                    return (
                        f"a resume must keep the scope of {spec.reverts}, which it reverts; "
                        "this one's differs"
                    )
                undone = target.action
        return self._check.signature_problem(command, undone)
