"""The check every receiver of a command makes itself, whatever the controller says.

A compromised or impersonated controller must not make a node agent, the Kubernetes operator
or the cloud agent act. A command is refused when:

- it has expired, its signed expiry is more than :data:`MAX_TTL_S` after its signed creation
  time, or that creation time lies more than :data:`MAX_CLOCK_SKEW_S` in the future (so a
  receiver that remembers handled corrections until their expiry remembers a bounded set);
- ``reverts`` is set on anything but a resume, or a resume does not name what it reverts;
- with a trust policy: the signatures over its exact spec bytes do not verify against the
  operators' keys, the issuer may not issue, or the distinct approvers fall short of the
  quorum for its action. A resume needs the quorum for undoing the action of the correction
  it reverts (``resume_quorum``, by default that action's own quorum): undo is as guarded as
  do. The receiver says which action that is (:data:`UNKNOWN`: the highest resume quorum in
  the policy; :data:`NOTHING_HERE`: the resume undoes nothing at this receiver, so the
  resume's own quorum).

Replay protection depends on the receiver's own state: the node agent remembers the
corrections it handled until their signed expiry (``backstop.agent.verifier``); the operator
needs none, because a command becomes the Correction named after its id, so a redelivery finds
that Correction; the cloud agent's holds are marks named after the correction.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from backstop.core.models import Action, Command
from backstop.security import quorum
from backstop.security.identities import TrustPolicy, TrustPolicyFile

MAX_TTL_S = 7 * 24 * 3600.0
"""The longest a correction may be in force, signed expiry minus signed creation time."""
MAX_CLOCK_SKEW_S = 300.0
"""How far in the future a signed creation time may lie."""

UNKNOWN: None = None
"""``reverts_action`` when the receiver cannot know what the resume undoes (fail safe)."""
NOTHING_HERE = ""
"""``reverts_action`` when nothing the resume would undo is in force at the receiver."""


class CommandCheck:
    """Why a command must be refused, if it must."""

    def __init__(
        self, policy: TrustPolicyFile | None, clock: Callable[[], float] = time.time
    ) -> None:
        self._policy = policy
        self._clock = clock

    @property
    def enforcing_signatures(self) -> bool:
        return self._policy is not None

    def form_problem(self, command: Command) -> str:
        """What is wrong with the command's signed times and ``reverts``, whoever signed it."""
        spec = command.spec
        now = self._clock()
        if spec.expires_at_s <= now:
            return f"expired {now - spec.expires_at_s:.0f} s ago"
        if spec.created_at_s - now > MAX_CLOCK_SKEW_S:
            return (
                f"created {spec.created_at_s - now:.0f} s in the future "
                f"(at most {MAX_CLOCK_SKEW_S:g} s of clock skew)"
            )
        if spec.expires_at_s - spec.created_at_s > MAX_TTL_S:
            return (
                f"in force for {(spec.expires_at_s - spec.created_at_s) / 86400:.1f} days; "
                f"at most {MAX_TTL_S / 86400:g} days"
            )
        if spec.reverts and spec.action is not Action.RESUME:
            return f"a {spec.action.value} cannot revert anything (reverts {spec.reverts})"
        if spec.action is Action.RESUME and not spec.reverts:
            return "a resume must name the correction it reverts"
        return ""

    def problem(self, command: Command, reverts_action: str | None = UNKNOWN) -> str:
        """The reason to refuse ``command``; empty when it may act.

        ``reverts_action``: for a resume, the action of the correction it undoes here
        (:data:`UNKNOWN` when the receiver cannot know it, :data:`NOTHING_HERE` when nothing
        it could undo is in force here).
        """
        form = self.form_problem(command)
        if form or self._policy is None:
            return form
        return self.signature_problem(command, reverts_action)

    def signature_problem(self, command: Command, reverts_action: str | None) -> str:
        """Why the signatures do not let the command act ('' if they do, or without policy)."""
        if self._policy is None:
            return ""
        spec = command.spec
        policy = self._policy.current()
        undone = reverts_action if reverts_action is not None else most_guarded(policy)
        verdict = quorum.check(
            command.spec_bytes,
            issuer=spec.issuer,
            action=spec.action.value,
            signatures=command.signatures,
            policy=policy,
            reverts_action=undone if spec.action is Action.RESUME else "",
        )
        return "" if verdict.ok else verdict.reason


def most_guarded(policy: TrustPolicy) -> str:
    """The action whose undoing needs the most approvals (what an unknown resume must meet)."""
    undoable = [a.value for a in Action if a is not Action.RESUME]
    return max(undoable, key=policy.required_resume_approvals)
