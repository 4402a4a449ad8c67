"""The agent's check of a correction a policy started: the policy is the authority, and the
agent holds the correction to it itself.

No person signs such a correction's spec; its command carries the policy version instead
(:class:`~backstop.core.models.PolicyAuthority`: the document's exact bytes and the
signatures over them). The agent refuses the command unless:

- the document is the one the spec names (its SHA-256 is the spec's ``policy_digest``), it
  parses, and the spec's issuer is ``policy:<its name>``;
- the spec's action and parameters are the policy's, and its scope names workloads and
  nothing broader (no ``--all``, node, selector or model scope);
- the policy has not expired, and the spec ends no later than the policy;
- with a trust policy: the signatures over the document verify against this agent's trusted
  keys and reach the quorum of the action (what issuing it by hand needs).

Then it acts only on the named workloads that match the policy in its own view
(:func:`matching`): a controller cannot point a policy at a workload the policy does not
describe. Blast-radius limits are the controller's brake (fleet-wide counts); an agent sees
only its own node.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from backstop.core.errors import BackstopError
from backstop.core.models import Command, SignatureRecord, Workload, WorkloadOutcome
from backstop.core.policies import digest_of
from backstop.policy.matching import CompiledPolicy
from backstop.security import quorum
from backstop.security.identities import TrustPolicy

if TYPE_CHECKING:
    from backstop.policy.document import PolicyDocument

ISSUER_PREFIX = "policy:"


def authority_problem(command: Command, trust: TrustPolicy | None, now_s: float) -> str:
    """Why a policy-started command may not act here ('' when it may)."""
    document, problem = _carried(command)
    if document is None:
        return problem
    policy = document.policy
    problem = _spec_problem(command, document)
    until = policy.expires_at_s
    if not problem and until is not None and (now_s >= until or command.spec.expires_at_s > until):
        problem = f"policy {policy.name} expires before the correction ends (or has expired)"
    if problem or trust is None:
        return problem
    return _quorum_problem(command, document, trust)


def _carried(command: Command) -> tuple[PolicyDocument | None, str]:
    """The policy the command carries, when it is the one its spec names."""
    spec, authority = command.spec, command.authority
    if not spec.policy_digest:
        return None, "the command carries a policy, but its correction names none"
    if authority is None:
        return None, f"started by policy version {spec.policy_digest[:16]}, but carries none"
    if digest_of(authority.document) != spec.policy_digest:
        return None, "the policy it carries is not the one its correction names"
    from backstop.policy.document import parse_policy  # YAML is read only for policies

    try:
        return parse_policy(authority.document, "policy"), ""
    except BackstopError as exc:
        return None, f"the policy it carries does not parse: {exc.message}"


def _quorum_problem(command: Command, document: PolicyDocument, trust: TrustPolicy) -> str:
    signatures = command.authority.signatures if command.authority is not None else ()
    return quorum_problem(
        document.raw, document.policy.name, signatures, trust, action=command.spec.action.value
    )


def quorum_problem(
    data: bytes,
    name: str,
    signatures: Sequence[SignatureRecord],
    trust: TrustPolicy,
    *,
    action: str,
    reverts_action: str = "",
) -> str:
    """Why the signatures over policy ``name``'s ``data`` (its document, or the statement that
    deletes it) do not authorise ``action`` here ('' when they do)."""
    issuers = [s.signer for s in signatures if s.role == quorum.SignatureRole.ISSUER]
    if len(issuers) != 1:
        return f"policy {name} carries {len(issuers)} issuer signatures, not one"
    verdict = quorum.check(
        data,
        issuer=issuers[0],
        action=action,
        signatures=signatures,
        policy=trust,
        reverts_action=reverts_action,
    )
    return "" if verdict.ok else f"policy {name} is not authorised: {verdict.reason}"


def _spec_problem(command: Command, document: PolicyDocument) -> str:
    spec, policy = command.spec, document.policy
    if spec.issuer != f"{ISSUER_PREFIX}{policy.name}":
        return f"issued as {spec.issuer!r}, not by the policy it carries ({policy.name})"
    if policy.action.correction is not spec.action:
        return f"a {spec.action.value}, but policy {policy.name} says {policy.action.value}"
    if spec.params != policy.params:
        return f"its parameters are not policy {policy.name}'s"
    scope = spec.scope
    if scope.all or scope.selector or scope.model_hashes or not scope.workload_ids:
        return "a policy's correction names its workloads, and nothing broader"
    return ""


def matching(
    command: Command, workloads: Sequence[Workload], node_labels: Mapping[str, str]
) -> tuple[list[Workload], list[WorkloadOutcome]]:
    """Of the workloads in scope, those the command's policy matches here; the others, each
    as a skipped outcome saying so. Without a policy: all of them."""
    if command.authority is None:
        return list(workloads), []
    from backstop.policy.document import parse_policy  # YAML is read only for policies

    compiled = CompiledPolicy(parse_policy(command.authority.document, "policy"))
    kept: list[Workload] = []
    skipped: list[WorkloadOutcome] = []
    for w in workloads:
        if compiled.matches(w, node_labels):
            kept.append(w)
        else:
            detail = f"does not match policy {compiled.policy.name} on this node"
            skipped.append(WorkloadOutcome(w.workload_id, w.pids, "skipped", detail))
    return kept, skipped
