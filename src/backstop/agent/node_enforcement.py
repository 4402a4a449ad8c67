"""Policies enforced on the node: a watchlisted model is corrected even while the controller
is unreachable, and handed back to the controller once it is heard again.

While the agent is not connected, each sample's workloads are matched against the node
policies (:mod:`backstop.agent.node_policies`); a match not yet held by a correction from the
same policy becomes a correction of the agent's own (id ``node-...``, issued by
``policy:<name>``, carrying the policy as its authority), verified by the same check a
controller's policy-started command gets and applied through the enforcer's queue. Once
connected, a workload held both by such a local correction and by the controller's correction
from the same policy version is handed over: the local one is lifted (the controller's keeps
it held, so nothing runs in between). A signed deletion of the policy lifts what it enforced.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence

from backstop.agent.enforcer import Enforcer
from backstop.agent.node_policies import NodePolicies, NodePolicy
from backstop.agent.state import AgentState
from backstop.core.models import Command, CorrectionSpec, PolicyAuthority, Scope, Workload
from backstop.core.specs import new_spec
from backstop.security.command_check import MAX_TTL_S
from backstop.wire import correction_convert

log = logging.getLogger(__name__)

LOCAL = "node-"
ISSUER_PREFIX = "policy:"


def node_correction_id(digest: str, node_id: str, workload_id: str, now_s: float) -> str:
    week = int(now_s // MAX_TTL_S)
    key = f"node\n{digest}\n{node_id}\n{workload_id}\n{week}".encode()
    return LOCAL + hashlib.sha256(key).hexdigest()[:24]


class NodeEnforcement:
    def __init__(
        self,
        node_id: str,
        enforcer: Enforcer,
        policies: NodePolicies,
        state: AgentState,
        node_labels: Mapping[str, str],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._node_id = node_id
        self._enforcer = enforcer
        self._policies = policies
        self._state = state
        self._labels = dict(node_labels)
        self._clock = clock
        self._specs: dict[str, CorrectionSpec] = {}

    def kept(self) -> str:
        """The digest of the node policies kept (for the Hello)."""
        return self._policies.digest()

    async def on_sample(self, workloads: Sequence[Workload], connected: bool) -> None:
        """Enforce (controller unreachable) or hand over (connected) after each sample."""
        if not (self._has_local() if connected else self._policies.policies):
            return  # nothing to hand over, or nothing to enforce: the usual sample
        now = self._clock()
        holds = self._policy_holds(now)
        if connected:
            for ids in holds.values():
                theirs = [i for i in ids if not i.startswith(LOCAL)]
                for cid in (i for i in ids if i.startswith(LOCAL)) if theirs else ():
                    await self._enforcer.lift_local(
                        cid,
                        f"handed over to {theirs[0]}, the controller's correction from the same "
                        "policy",
                        "policy.node_handover",
                    )
            return
        for policy, workload in self._policies.matches(workloads, self._labels, now):
            cid = node_correction_id(policy.digest, self._node_id, workload.workload_id, now)
            # once per policy, workload and week: what a person later undid stays undone
            if (policy.digest, workload.workload_id) not in holds and (
                cid not in self._state.corrections
            ):
                await self._engage(policy, workload, cid, now)
                holds[(policy.digest, workload.workload_id)] = [cid]

    async def on_policies(
        self, enforce: Sequence[PolicyAuthority], deletions: Sequence[PolicyAuthority]
    ) -> None:
        """A new set from the controller: keep it; lift what a valid deletion ends."""
        self._policies.replace(enforce)
        local = self._local_specs()
        known = {
            spec.policy_digest: f"{spec.issuer.removeprefix(ISSUER_PREFIX)} {spec.action.value}"
            for spec in local.values()
        }
        for deletion in deletions:
            digest = self._policies.deleted(deletion, known)
            for cid, spec in local.items():
                if digest and spec.policy_digest == digest:
                    await self._enforcer.lift_local(
                        cid, "its policy was deleted (signed)", "policy.node_deleted"
                    )

    async def _engage(self, policy: NodePolicy, workload: Workload, cid: str, now: float) -> None:
        p = policy.compiled.policy
        action = p.action.correction
        if action is None:
            return
        until = p.expires_at_s
        spec = new_spec(
            action,
            Scope(node_ids=(self._node_id,), workload_ids=(workload.workload_id,)),
            f"policy {p.name}, enforced on the node while the controller is unreachable",
            f"{ISSUER_PREFIX}{p.name}",
            now_s=now,
            ttl_s=MAX_TTL_S if until is None else min(MAX_TTL_S, until - now),
            params=p.params,
            correction_id=cid,
            policy_digest=policy.digest,
        )
        command = Command(
            0, spec, correction_convert.spec_bytes(spec), (), authority=policy.authority
        )
        ack = await self._enforcer.run_local(
            command, "policy.node_enforce", workload_id=workload.workload_id
        )
        log.warning(
            "node policy enforced while the controller is unreachable",
            extra={"correction_id": spec.correction_id, "policy": p.name, "detail": ack.message},
        )

    def _spec(self, correction_id: str, data: str) -> CorrectionSpec:
        spec = self._specs.get(correction_id)
        if spec is None:
            spec = correction_convert.spec_from_bytes(bytes.fromhex(data))
            self._specs[correction_id] = spec
        return spec

    def _policy_holds(self, now: float) -> dict[tuple[str, str], list[str]]:
        """(policy digest, workload id) → the corrections from that policy holding it."""
        holds: dict[tuple[str, str], list[str]] = {}
        for c in self._state.active(now):
            digest = self._spec(c.correction_id, c.spec).policy_digest
            for wid in c.workload_ids if digest else ():
                holds.setdefault((digest, wid), []).append(c.correction_id)
        return holds

    def _has_local(self) -> bool:
        return any(cid.startswith(LOCAL) for cid in list(self._state.corrections))

    def _local_specs(self) -> dict[str, CorrectionSpec]:
        return {
            c.correction_id: self._spec(c.correction_id, c.spec)
            for c in self._state.active(self._clock())
            if c.correction_id.startswith(LOCAL)
        }
