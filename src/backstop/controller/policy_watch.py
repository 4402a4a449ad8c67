"""Policy evaluation at the controller: every stored report's workloads against every policy
in force, as the inventory changes.

A workload is judged when it is new, when what the policies look at changed (its model, its
framework and behaviour, its labels, whether its GPU use is attributed), or when the policies
in force changed; otherwise a report costs one dictionary lookup per workload. The policies
in force are read from the store every :data:`RELOAD_S` (a change through another replica
shows within that) and at once after a change through this one.

A match raises an alert, one per policy and workload (the alert desk deduplicates), and for a
policy whose action corrects, starts a correction issued by ``policy:<name>`` with the policy
version as its authority (:mod:`backstop.controller.corrections.policy_starts`): scoped to
that workload on its node, with the policy's action and parameters, ending with the policy
or after the longest lifetime a correction may have. Past ``max_targets_per_hour`` (counted
by this replica over the last hour) it is held for a person to release. A policy naming an
open incident links its alerts and corrections to it (the correction's signed spec names it);
``incident: auto`` opens one at the policy version's first match, which later matches join.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from backstop.controller.corrections.policy_starts import PolicyStarts, policy_correction_id
from backstop.controller.corrections.records import Records
from backstop.controller.incident_book import IncidentBook
from backstop.controller.store.base import Store
from backstop.core.alerts import AlertSpec
from backstop.core.errors import BackstopError
from backstop.core.incidents import AUTO, Incident, IncidentState
from backstop.core.models import Report, Scope, Workload
from backstop.core.policies import PolicyState
from backstop.core.specs import new_spec
from backstop.policy.document import parse_policy
from backstop.policy.matching import CompiledPolicy, Verdict, matching_policies
from backstop.security.command_check import MAX_TTL_S

log = logging.getLogger(__name__)

RELOAD_S = 2.0
HOUR_S = 3600.0
MAX_REASON = 480
MAX_JUDGED = 200_000


@dataclass(frozen=True, slots=True)
class _InForce:
    compiled: CompiledPolicy
    version: int


class PolicyWatch:
    def __init__(
        self,
        store: Store,
        starts: PolicyStarts,
        raise_alert: Callable[[AlertSpec], object],
        clock: Callable[[], float] = time.time,
        *,
        on_reload: Callable[[], None] = lambda: None,
        incidents: IncidentBook | None = None,
    ) -> None:
        self.on_reload = on_reload
        """Told when the policies in force changed (the agents get the node policies anew)."""
        self._store = store
        self._incidents = incidents or IncidentBook(store, Records(store, clock))
        self._starts = starts
        self._raise = raise_alert
        self._clock = clock
        self._policies: list[_InForce] = []
        self._compiled: list[CompiledPolicy] = []
        self._version_of: dict[int, int] = {}
        """Each compiled policy's version, by identity (set with the policies at reload)."""
        self._versions: tuple[tuple[str, int], ...] = ()
        self._loaded_s = float("-inf")
        self._generation = 0
        self._expressions = False
        """Whether a policy in force has an expression (it may look at usage, which moves)."""
        self._judged: dict[tuple[str, str], tuple[object, int]] = {}
        self._started: dict[str, deque[float]] = {}
        self._labels: dict[str, Mapping[str, str]] = {}
        self._labels_s = float("-inf")

    def changed(self) -> None:
        """The policies in force may have changed: read them before the next judgement."""
        self._loaded_s = float("-inf")

    def observe(self, reports: Sequence[Report]) -> None:
        """Judge the workloads of freshly stored reports."""
        self._reload()
        if not self._policies:
            return
        labels = self._node_labels(reports)
        for report in reports:
            for workload in report.workloads:
                self._consider(workload, labels.get(report.node_id, {}))

    # -- policies in force ---------------------------------------------------------------

    def _reload(self) -> None:
        now = self._clock()
        if now - self._loaded_s < RELOAD_S:
            return
        self._loaded_s = now
        active = [
            v
            for v in self._store.list_policy_versions(states=(PolicyState.ACTIVE,))
            if not v.deletes
        ]
        versions = tuple((v.name, v.version) for v in active)
        if versions == self._versions:
            return
        policies = []
        for v in active:
            try:
                compiled = CompiledPolicy(parse_policy(v.document, f"policy {v.name}"))
            except BackstopError as exc:  # it parsed when applied; say so loudly, go on
                log.error(  # noqa: TRY400 - the message says it all; no traceback wanted
                    "policy in force does not parse",
                    extra={"policy": v.name, "error": exc.message},
                )
                continue
            policies.append(_InForce(compiled, v.version))
        self._policies, self._versions = policies, versions
        self._compiled = [p.compiled for p in policies]
        self._version_of = {id(p.compiled): p.version for p in policies}
        self._expressions = any(p.compiled.policy.match.expression for p in policies)
        self._generation += 1
        self._judged.clear()
        log.info("policies in force", extra={"count": len(policies)})
        self.on_reload()

    def _node_labels(self, reports: Sequence[Report]) -> Mapping[str, Mapping[str, str]]:
        # one row per node with workloads in the batch, not the whole fleet's (1,000 nodes
        # took 50-70 ms to list, on every batch)
        labels: dict[str, Mapping[str, str]] = {}
        for node_id in {r.node_id for r in reports if r.workloads}:
            record = self._store.get_node(node_id)
            if record is not None:
                labels[node_id] = record.info.labels
        return labels

    # -- judging -------------------------------------------------------------------------

    def _consider(self, workload: Workload, node_labels: Mapping[str, str]) -> None:
        key = (workload.node_id, workload.workload_id)
        seen = (_what_policies_see(workload, node_labels, self._expressions), self._generation)
        if self._judged.get(key) == seen:
            return
        if len(self._judged) >= MAX_JUDGED:
            self._judged.clear()  # workloads come and go: start afresh (alerts deduplicate)
        self._judged[key] = seen
        now = self._clock()
        for policy, verdict in matching_policies(self._compiled, workload, node_labels, now_s=now):
            self._matched(policy, self._version_of[id(policy)], workload, verdict, now)

    def _matched(
        self,
        compiled: CompiledPolicy,
        version: int,
        workload: Workload,
        verdict: Verdict,
        now: float,
    ) -> None:
        policy = compiled.policy
        why = "; ".join(verdict.reasons)
        model = workload.fingerprint.model
        digest = compiled.document.digest
        incident = self._incident(policy.name, policy.incident, version, digest)
        self._raise(
            AlertSpec(
                dedup_key=f"{policy.name}/{workload.workload_id}",
                policy=policy.name,
                severity=policy.severity.value,
                summary=(
                    f"policy {policy.name} matched workload {workload.workload_id} on "
                    f"{workload.node_id}: {why}"
                )[:MAX_REASON],
                policy_version=version,
                node_id=workload.node_id,
                workload_id=workload.workload_id,
                details={
                    "reasons": list(verdict.reasons),
                    "action": policy.action.value,
                    "model_id": model.model_id if model is not None else "",
                    "description": policy.description,
                    **({"incident": incident} if incident else {}),
                },
            )
        )
        action = policy.action.correction
        if action is None:
            return
        cid = policy_correction_id(digest, workload.node_id, workload.workload_id, now)
        until = policy.expires_at_s
        ttl = MAX_TTL_S if until is None else min(MAX_TTL_S, until - now)
        spec = new_spec(
            action,
            Scope(node_ids=(workload.node_id,), workload_ids=(workload.workload_id,)),
            f"policy {policy.name} v{version}: {why}"[:MAX_REASON],
            f"policy:{policy.name}",
            now_s=now,
            ttl_s=ttl,
            params=policy.params,
            correction_id=cid,
            policy_digest=digest,
            incident=incident,
        )
        held = self._over_limit(policy.name, policy.max_targets_per_hour, now)
        if self._starts.start(spec, held=held) is not None and not held:
            self._started.setdefault(policy.name, deque()).append(now)

    def _incident(self, name: str, named: str, version: int, digest: str) -> str:
        """The incident a match of policy ``name`` joins: for ``auto`` the version's own
        (opened now if need be), else the one it names; '' when that one is not open here."""
        if not named:
            return ""
        found: Incident | None
        if named == AUTO:
            found = self._incidents.for_policy(name, version, digest)
        else:
            found = self._store.get_incident(named) if named.startswith("inc-") else None
        if found is not None and found.state is IncidentState.OPEN:
            return found.incident_id
        log.warning(
            "policy names no open incident; its match is not linked",
            extra={"policy": name, "incident": named},
        )
        return ""

    def _over_limit(self, name: str, limit: int, now: float) -> str:
        started = self._started.setdefault(name, deque())
        while started and started[0] <= now - HOUR_S:
            started.popleft()
        if len(started) < limit:
            return ""
        return (
            f"held: policy {name} started {len(started)} corrections in the last hour, its "
            f"limit (max_targets_per_hour {limit}); approve to release"
        )


def _what_policies_see(workload: Workload, node_labels: Mapping[str, str], usage: bool) -> object:
    """What a policy can look at, as one comparable value (a change means judge again);
    with ``usage`` (an expression is in force) the GPU use and serving figures too."""
    fp = workload.fingerprint
    model = fp.model
    moving = (fp.gpus, workload.serving) if usage else None
    return (
        moving,
        fp.framework,
        fp.behaviour,
        fp.model_hash,
        (model.model_id, model.structure_id, model.architecture, model.parameters)
        if model is not None
        else None,
        tuple(sorted(workload.labels.items())),
        tuple(sorted(node_labels.items())),
        workload.unattributed,
        workload.state,
        tuple(fp.cmdline),
        fp.exe,
    )
