"""The policies with ``enforce: node`` this agent was given: verified, kept across restarts,
matched against its own workloads while the controller is unreachable.

The controller sends the set in force after each Welcome and whenever it changes. Each policy
is checked as a policy-started command would be (:mod:`backstop.agent.policy_authority`: it
parses, corrects, says ``enforce: node``, and with a trust policy its signatures reach the
quorum of its action); one that fails is refused (logged and journaled), the others kept. The
kept set is written to the state directory (``node-policies.json``, mode 0600, replaced
atomically), so a restarted agent with no controller still enforces it.

A new set replaces the old one for what is matched from now on; it never lifts what the agent
already enforced. That takes a deletion: the policy's deletion statement signed with the
quorum of undoing its action (:meth:`NodePolicies.deleted`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from backstop.agent.policy_authority import quorum_problem
from backstop.core.errors import BackstopError
from backstop.core.models import PolicyAuthority, SignatureRecord, Workload
from backstop.core.policies import deletion_statement, set_digest
from backstop.policy.matching import CompiledPolicy
from backstop.security.identities import TrustPolicyFile

if TYPE_CHECKING:
    from backstop.policy.document import PolicyDocument

log = logging.getLogger(__name__)

FILE = "node-policies.json"
RESUME = "resume"


@dataclass(frozen=True, slots=True)
class NodePolicy:
    compiled: CompiledPolicy
    authority: PolicyAuthority

    @property
    def digest(self) -> str:
        return self.compiled.document.digest


class NodePolicies:
    def __init__(self, state_dir: Path, trust: TrustPolicyFile | None) -> None:
        self._path = state_dir / FILE
        self._trust = trust
        self._policies: dict[str, NodePolicy] = {}
        self._load()

    @property
    def policies(self) -> tuple[NodePolicy, ...]:
        return tuple(self._policies.values())

    def digest(self) -> str:
        """The kept set as one digest (said in each Hello; ``""`` for none)."""
        return set_digest(self._policies)

    def replace(self, authorities: Sequence[PolicyAuthority]) -> list[str]:
        """Keep the verified ones of ``authorities`` as the set in force; why each other was
        refused."""
        kept: dict[str, NodePolicy] = {}
        refused = []
        for authority in authorities:
            policy, problem = self._verified(authority)
            if policy is None:
                refused.append(problem)
                log.warning("node policy refused", extra={"reason": problem})
                continue
            kept[policy.digest] = policy
        if kept.keys() != self._policies.keys():
            log.info("node policies in force", extra={"count": len(kept)})
        self._policies = kept
        self._save()
        return refused

    def deleted(self, deletion: PolicyAuthority, known: Mapping[str, str]) -> str:
        """The digest of the policy ``deletion`` validly ends ('' when it ends none).
        ``known`` maps each policy digest the agent enforced to its name and action as
        ``"name action"``."""
        for digest, name_action in known.items():
            name, _, action = name_action.partition(" ")
            if deletion.document != deletion_statement(name, digest):
                continue
            trust = self._trust.current() if self._trust is not None else None
            if trust is None:
                return digest
            problem = quorum_problem(
                deletion.document,
                name,
                deletion.signatures,
                trust,
                action=RESUME,
                reverts_action=action,
            )
            if not problem:
                return digest
            log.warning("deletion of a node policy refused", extra={"reason": problem})
        return ""

    def matches(
        self, workloads: Sequence[Workload], node_labels: Mapping[str, str], now_s: float
    ) -> list[tuple[NodePolicy, Workload]]:
        """Each (policy, workload) pair that matches now."""
        return [
            (policy, w)
            for w in workloads
            if not w.unattributed
            for policy in self._policies.values()
            if policy.compiled.verdict(w, node_labels, now_s=now_s).matched
        ]

    # -- verification and storage --------------------------------------------------------

    def _verified(self, authority: PolicyAuthority) -> tuple[NodePolicy | None, str]:
        from backstop.policy.document import Enforce, parse_policy  # YAML only for policies

        try:
            document: PolicyDocument = parse_policy(authority.document, "node policy")
        except BackstopError as exc:
            return None, exc.message
        policy = document.policy
        action = policy.action.correction
        if policy.enforce is not Enforce.NODE or action is None:
            return None, f"policy {policy.name} is not a correcting policy enforced on nodes"
        trust = self._trust.current() if self._trust is not None else None
        if trust is not None:
            problem = quorum_problem(
                document.raw, policy.name, authority.signatures, trust, action=action.value
            )
            if problem:
                return None, problem
        return NodePolicy(CompiledPolicy(document), authority), ""

    def _load(self) -> None:
        try:
            stored = json.loads(self._path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.error("cannot read the node policies; none kept", extra={"error": str(exc)})  # noqa: TRY400
            return
        authorities = [
            PolicyAuthority(
                bytes.fromhex(entry["document"]),
                tuple(
                    SignatureRecord(
                        s["key_id"], s["signer"], s["role"], bytes.fromhex(s["signature"]), s["at"]
                    )
                    for s in entry["signatures"]
                ),
            )
            for entry in stored.get("policies", [])
        ]
        self.replace(authorities)

    def _save(self) -> None:
        data = {
            "policies": [
                {
                    "document": p.authority.document.hex(),
                    "signatures": [
                        {
                            "key_id": s.key_id,
                            "signer": s.signer,
                            "role": s.role,
                            "signature": s.signature.hex(),
                            "at": s.signed_at_s,
                        }
                        for s in p.authority.signatures
                    ],
                }
                for p in self._policies.values()
            ]
        }
        tmp = self._path.with_name(self._path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._path)
