"""The operator as the cluster's agent: one controller stream for the whole cluster.

It connects through the same :class:`~backstop.uplink.session.ControllerSession` a node agent
uses, as node ``k8s-<cluster>`` labelled ``backstop.io/kind=kubernetes``:

- up: reports of the cluster's GPU-requesting workloads (one ``Workload`` per Deployment,
  StatefulSet or pod, id ``namespace/Kind/name``, labels from the object and its pod template,
  the framework when the image name says it, one ``GpuUse`` per requested GPU: the GPUs are
  requested, not yet seen, so their "uuid" is ``nvidia.com/gpu#i``);
- down: commands, each checked (``security.command_check``), mapped to a Correction
  (``commands``), created (or found, when redelivered), and acknowledged APPLIED or FAILED
  once its phase settles, with one outcome per touched object.

Report sequence numbers are milliseconds since the epoch (strictly increasing), so a restarted
operator never reuses one and keeps no state for it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from backstop.core.errors import BackstopError, NotFound
from backstop.core.models import (
    Action,
    Command,
    CommandAck,
    CorrectionSpec,
    Fingerprint,
    GpuUse,
    NodeInfo,
    Report,
    TargetState,
    Workload,
    WorkloadOutcome,
)
from backstop.operator import commands
from backstop.operator.crd import CorrectionResource, Phase, TargetRecord, parse_correction
from backstop.operator.crd import TargetState as ObjectState
from backstop.operator.inventory import ClusterReader
from backstop.operator.kube import AlreadyExists, Kind, KubeApi
from backstop.operator.scope import GPU_RESOURCE, WorkloadView, workload_id, workload_labels
from backstop.operator.settings import OperatorSettings
from backstop.security.command_check import NOTHING_HERE, UNKNOWN
from backstop.uplink.identity import check_link_security
from backstop.uplink.reporting import acknowledge, run_with_reports
from backstop.uplink.stateless_agent import StatelessAgent

log = logging.getLogger(__name__)

CAPABILITIES = ("k8s.scale", "k8s.delete-pod", "k8s.cordon", "k8s.taint")
MAX_LABEL_VALUE = 256
_APPLIED_STATES = (
    ObjectState.SCALED,
    ObjectState.DELETED,
    ObjectState.CORDONED,
    ObjectState.RESTORED,
    ObjectState.RELEASED,
    ObjectState.UNCORDONED,
)

WaitSettled = Callable[[str, float], Awaitable[CorrectionResource | None]]


def check_security(settings: OperatorSettings) -> None:
    """Refuse to start without what the chosen mode needs (as a node agent does)."""
    check_link_security(
        settings,
        who="cluster",
        enrol_hint=f"backstop agent enroll --node-id {settings.node_id}; or --no-controller",
    )


def _created_at(obj: Mapping[str, object]) -> float:
    meta = obj.get("metadata")
    stamp = meta.get("creationTimestamp") if isinstance(meta, Mapping) else None
    if not isinstance(stamp, str):
        return 0.0
    try:
        return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def workload_record(w: WorkloadView, node_id: str, hold: Action | None) -> Workload:
    """A GPU workload as the controller sees it."""
    pods = w.replicas if w.replicas is not None else 1
    gpus = w.gpus_per_pod * pods
    if hold is not None:
        state = "paused" if hold is Action.PAUSE else "terminated"
    else:
        state = "terminated" if w.deleting else "running"
    return Workload(
        workload_id=w.workload_id,
        node_id=node_id,
        root_pid=0,
        pids=(),
        fingerprint=Fingerprint(
            framework=w.framework,
            gpus=tuple(GpuUse(f"{GPU_RESOURCE}#{i}") for i in range(gpus)),
        ),
        labels={k: v[:MAX_LABEL_VALUE] for k, v in workload_labels(w).items()},
        state=state,
        started_at_s=_created_at(w.raw),
    )


def _outcome(t: TargetRecord) -> WorkloadOutcome:
    ident = f"node/{t.name}" if t.kind == "Node" else workload_id(t.namespace, t.kind, t.name)
    if t.state in _APPLIED_STATES:
        result = "applied"
    elif t.state is ObjectState.FAILED:
        result = "failed"
    else:
        result = "skipped"
    detail = f"{t.state.value}: {t.message}" if t.message else t.state.value
    return WorkloadOutcome(ident[:128], (), result, detail)


@dataclass
class _Counts:
    gpu_nodes: int = 0
    gpus: int = 0


class ClusterAgent(StatelessAgent):
    """Reports the cluster up, turns commands into Corrections, acknowledges their outcome."""

    def __init__(
        self,
        settings: OperatorSettings,
        kube: KubeApi,
        reader: ClusterReader,
        *,
        nudge: Callable[[str], None],
        wait_settled: WaitSettled,
        holds: Callable[[], Mapping[str, Action]],
    ) -> None:
        check_security(settings)
        self.settings = settings
        super().__init__(settings, settings.node_id)
        self._kube = kube
        self._reader = reader
        self._nudge = nudge
        self._wait_settled = wait_settled
        self._holds = holds
        self._counts = _Counts()

    # -- up ---------------------------------------------------------------------------------

    def inventory(self) -> NodeInfo:
        return self.node_info(
            {
                "backstop.io/kind": "kubernetes",
                "backstop.io/cluster": self.settings.cluster_name,
                "backstop.io/gpu-nodes": str(self._counts.gpu_nodes),
                "backstop.io/gpus": str(self._counts.gpus),
            },
            CAPABILITIES,
        )

    def snapshot(self) -> Report:
        """One report of the cluster's GPU workloads (blocking: lists the cluster)."""
        views = self._reader.workloads()
        nodes = self._reader.gpu_nodes()
        self._counts = _Counts(len(nodes), sum(n.gpus for n in nodes))
        holds = self._holds()
        workloads = tuple(
            workload_record(w, self.node_id, _hold_action(w.holders, holds))
            for w in views
            if w.gpus_per_pod > 0
        )
        return self.report(workloads)

    async def run(self) -> None:
        """The stream and the reports, until cancelled."""
        await run_with_reports(
            self.session,
            lambda: asyncio.to_thread(self.snapshot),
            self.settings.report_interval_s,
            "the cluster",
        )

    # -- down -------------------------------------------------------------------------------

    async def on_command(self, command: Command) -> CommandAck:
        """Apply a controller command through a Correction; acknowledge its outcome."""
        spec = command.spec

        def ack(
            state: TargetState, message: str, outcomes: Sequence[WorkloadOutcome] = ()
        ) -> CommandAck:
            return acknowledge(command, state, message, outcomes)

        problem = await self.refusal(command)
        if problem:
            return ack(TargetState.REFUSED, problem)
        decision = commands.plan(spec, self.node_id)
        if isinstance(decision, commands.NothingHere):
            return ack(TargetState.APPLIED, decision.message)
        try:
            nothing = await self._create(spec, decision)
        except BackstopError as exc:
            return ack(TargetState.FAILED, exc.message)
        if nothing:
            return ack(TargetState.APPLIED, nothing)
        self._nudge(decision.name)
        found = await self._wait_settled(decision.name, self.settings.ack_wait_s)
        state, message = _settled_state(decision.name, found, self.settings.ack_wait_s)
        return ack(state, message, [_outcome(t) for t in found.targets] if found else [])

    async def undone_action(self, spec: CorrectionSpec) -> str | None:
        """The action of the Correction a resume reverts, from that Correction's spec (its
        quorum is the resume's); nothing here: nothing to undo; unreadable: unknown."""
        if not spec.reverts:
            return NOTHING_HERE
        name = commands.correction_name(spec.reverts)
        try:
            found = await asyncio.to_thread(self._kube.get, Kind.CORRECTION, name)
            return parse_correction(found).action.value
        except NotFound:
            return NOTHING_HERE
        except BackstopError as exc:
            log.warning(
                "cannot read the Correction a resume reverts; the highest resume quorum applies",
                extra={"correction": name, "error": exc.message},
            )
            return UNKNOWN

    async def _create(self, spec: CorrectionSpec, decision: commands.MakeCorrection) -> str:
        """Create the Correction (found, when redelivered); a message when there is nothing
        to do after all (a resume of something never applied here)."""
        if spec.action is Action.RESUME:
            original = commands.correction_name(spec.reverts)
            try:
                await asyncio.to_thread(self._kube.get, Kind.CORRECTION, original)
            except NotFound:
                return f"nothing of {spec.reverts} here to undo"
        try:
            await asyncio.to_thread(self._kube.create_correction, decision.manifest)
        except AlreadyExists:
            log.info(
                "command redelivered; its Correction exists",
                extra={"correction_id": spec.correction_id},
            )
        return ""


def _settled_state(
    name: str, found: CorrectionResource | None, waited_s: float
) -> tuple[TargetState, str]:
    """The acknowledgement a Correction's phase makes."""
    if found is None:
        return TargetState.FAILED, f"Correction {name} was deleted before it settled"
    if not found.settled:
        return TargetState.FAILED, (
            f"Correction {name} not settled within {waited_s:g} s (phase {found.phase.value}); "
            f"see kubectl get correction {name}"
        )
    state = TargetState.FAILED if found.phase is Phase.FAILED else TargetState.APPLIED
    return state, found.message


def _hold_action(holders: Sequence[str], holds: Mapping[str, Action]) -> Action | None:
    """The most severe action among the Corrections holding a workload (pause if unknown)."""
    if not holders:
        return None
    actions = [holds.get(h, Action.PAUSE) for h in holders]
    return Action.PAUSE if all(a is Action.PAUSE for a in actions) else Action.TERMINATE
