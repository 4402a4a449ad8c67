"""The cloud agent: one controller stream for one cloud account.

It connects through the same :class:`~backstop.uplink.session.ControllerSession` a node agent
uses, as node ``<provider>-<account>`` labelled ``backstop.io/kind=cloud``:

- up, every report interval: the account's GPU instances and endpoints as workloads (labels
  from their tags, one ``GpuUse`` per GPU), after keeping held resources stopped;
- down: commands, each checked (``security.command_check``) and applied to the resources in
  scope. ``pause``, ``terminate`` and ``shutdown`` mark each resource with a hold and stop it;
  ``resume`` removes the hold of the correction it reverts and starts the resource once no
  hold is left; ``observe`` and ``throttle`` have nothing to act on here and say so.

Every cloud action is written to the agent's journal (hash-chained, fsynced) before it is
made. Commands and the hold check run one at a time. Report sequence numbers are milliseconds
since the epoch, so a restarted agent never reuses one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from backstop.cloud.resources import CloudResource, Provider, hold_key
from backstop.cloud.settings import CloudSettings
from backstop.core.errors import BackstopError
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
from backstop.core.scope import is_label, node_in_scope, workload_in_scope
from backstop.security.audit import JOURNAL_FILE
from backstop.security.audit_file import FileAuditLog
from backstop.security.command_check import NOTHING_HERE, UNKNOWN
from backstop.telemetry import sd_notify
from backstop.uplink.identity import check_link_security
from backstop.uplink.reporting import acknowledge, run_with_reports
from backstop.uplink.stateless_agent import StatelessAgent

log = logging.getLogger(__name__)
READY_WAIT_S = 5.0
"""How long the cloud agent waits for the controller before it tells systemd it is ready."""

CAPABILITIES = ("cloud.stop", "cloud.start")
HOLDING = (Action.PAUSE, Action.TERMINATE, Action.SHUTDOWN)
MAX_LABELS = 64


def check_settings(settings: CloudSettings) -> None:
    """Refuse settings that cannot work, and a link without what its mode needs, before any
    cloud API is called."""
    settings.validate()
    check_link_security(
        settings,
        who="cloud agent",
        enrol_hint="backstop agent enroll --node-id NODE --state-dir STATE_DIR",
    )


def workload_record(r: CloudResource, node_id: str, provider: str) -> Workload:
    """A cloud resource as the controller sees it."""
    holds = r.holds
    if holds:
        state = "paused" if all(a is Action.PAUSE for a in holds.values()) else "terminated"
    else:
        state = r.state
    labels = {k: v for k, v in list(r.tags.items())[:MAX_LABELS] if is_label(k, v)}
    labels.update(
        {
            "backstop.io/provider": provider,
            "backstop.io/resource": r.kind,
            "backstop.io/location": r.location,
        }
    )
    if is_label("backstop.io/instance-type", r.instance_type):
        labels["backstop.io/instance-type"] = r.instance_type
    return Workload(
        workload_id=r.workload_id,
        node_id=node_id,
        root_pid=0,
        pids=(),
        fingerprint=Fingerprint(gpus=tuple(GpuUse(f"{m}#{i}") for i, m in enumerate(r.gpus))),
        labels=labels,
        state=state,
        started_at_s=r.created_at_s,
    )


class CloudAgent(StatelessAgent):
    """Reports one account up, applies commands to its resources, keeps holds in force."""

    def __init__(self, settings: CloudSettings, provider: Provider) -> None:
        check_settings(settings)
        self.settings = settings
        self.provider = provider
        self._resources: list[CloudResource] = []
        self._lock = asyncio.Lock()
        super().__init__(
            settings, settings.node_id or f"{provider.name}-{provider.account}".lower()
        )
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.journal = FileAuditLog(settings.state_dir / JOURNAL_FILE)

    # -- up ---------------------------------------------------------------------------------

    def inventory(self) -> NodeInfo:
        return self.node_info(
            {
                "backstop.io/kind": "cloud",
                "backstop.io/provider": self.provider.name,
                "backstop.io/account": self.provider.account,
                "backstop.io/resources": str(len(self._resources)),
                "backstop.io/gpus": str(sum(len(r.gpus) for r in self._resources)),
            },
            CAPABILITIES,
        )

    async def sync(self) -> Report:
        """List the account, stop held resources found running again, and make a report."""
        async with self._lock:
            resources = await self._list()
            for r in resources:
                if r.holds and r.active:
                    log.warning(
                        "held resource found running; stopping it again",
                        extra={"workload_id": r.workload_id, "holds": sorted(r.holds)},
                    )
                    try:
                        await self._act(r, "cloud.stop", "hold in force", sorted(r.holds)[0])
                    except BackstopError as exc:
                        log.error(  # noqa: TRY400 (the message says it all)
                            "could not stop a held resource",
                            extra={"workload_id": r.workload_id, "error": exc.message},
                        )
        return self.report(
            tuple(workload_record(r, self.node_id, self.provider.name) for r in resources)
        )

    async def _list(self) -> list[CloudResource]:
        self._resources = list(await asyncio.to_thread(self.provider.resources))
        return self._resources

    async def run(self) -> None:
        """The stream and the reports, until cancelled (systemd told once it serves)."""

        def status() -> str:
            link = "connected to" if self.session.connected.is_set() else "waiting for"
            return f"{link} controller {self.settings.controller}; {self.provider.name} account"

        try:
            async with sd_notify.serving(status, self.session.connected.wait, READY_WAIT_S):
                await run_with_reports(
                    self.session, self.sync, self.settings.report_interval_s, "the account"
                )
        finally:
            self.journal.close()

    # -- down -------------------------------------------------------------------------------

    async def on_command(self, command: Command) -> CommandAck:
        spec = command.spec
        cid = spec.correction_id
        problem = await self.refusal(command)
        if problem:
            self.journal.append(
                actor=spec.issuer, action="command.refused", subject=cid, details={"why": problem}
            )
            return acknowledge(command, TargetState.REFUSED, problem)
        if spec.action not in (*HOLDING, Action.RESUME):
            message = f"nothing to {spec.action.value} at the cloud level"
            return acknowledge(command, TargetState.APPLIED, message)
        async with self._lock:
            try:
                resources = await self._list()
            except BackstopError as exc:
                return acknowledge(command, TargetState.FAILED, exc.message)
            if spec.action is Action.RESUME:
                outcomes = [
                    await self._release(r, spec) for r in resources if spec.reverts in r.holds
                ]
            else:
                outcomes = [await self._hold(r, spec) for r in self._in_scope(resources, spec)]
        failed = [o for o in outcomes if o.outcome == "failed"]
        summary = _summary(spec, outcomes)
        state = TargetState.FAILED if failed else TargetState.APPLIED
        return acknowledge(command, state, summary, outcomes)

    async def undone_action(self, spec: CorrectionSpec) -> str | None:
        """The action a resume undoes, from the hold marks named after the reverted correction
        (its quorum is the resume's); no mark: nothing to undo; the account unreadable:
        unknown (the highest resume quorum)."""
        try:
            async with self._lock:
                resources = await self._list()
        except BackstopError as exc:
            log.warning("cannot list the account to check a resume", extra={"error": exc.message})
            return UNKNOWN
        actions = {r.holds[spec.reverts] for r in resources if spec.reverts in r.holds}
        if not actions:
            return NOTHING_HERE
        return max(actions, key=list(Action).index).value

    def _in_scope(
        self, resources: Sequence[CloudResource], spec: CorrectionSpec
    ) -> list[CloudResource]:
        if not node_in_scope(spec.scope, self.node_id):
            return []
        return [
            r
            for r in resources
            if workload_in_scope(spec.scope, workload_record(r, self.node_id, self.provider.name))
        ]

    async def _act(self, r: CloudResource, action: str, why: str, cid: str) -> str:
        """Journal, then do, one cloud action."""
        self.journal.append(
            actor=self.node_id,
            action=action,
            subject=r.workload_id,
            details={"correction_id": cid, "why": why, "state": r.state},
        )
        do = self.provider.stop if action == "cloud.stop" else self.provider.start
        return await asyncio.to_thread(do, r)

    async def _hold(self, r: CloudResource, spec: CorrectionSpec) -> WorkloadOutcome:
        cid = spec.correction_id
        try:
            key = hold_key(cid)
            if key not in r.tags:
                self.journal.append(
                    actor=spec.issuer,
                    action="cloud.hold",
                    subject=r.workload_id,
                    details={"correction_id": cid, "action": spec.action.value},
                )
                await asyncio.to_thread(self.provider.mark, r, {key: spec.action.value})
            if not r.active:
                return WorkloadOutcome(r.workload_id, (), "applied", f"held; already {r.state}")
            done = await self._act(r, "cloud.stop", spec.action.value, cid)
        except BackstopError as exc:
            return WorkloadOutcome(r.workload_id, (), "failed", exc.message[:500])
        return WorkloadOutcome(r.workload_id, (), "applied", f"held; {done}")

    async def _release(self, r: CloudResource, spec: CorrectionSpec) -> WorkloadOutcome:
        original = spec.reverts
        try:
            self.journal.append(
                actor=spec.issuer,
                action="cloud.release",
                subject=r.workload_id,
                details={"correction_id": spec.correction_id, "reverts": original},
            )
            await asyncio.to_thread(self.provider.unmark, r, [hold_key(original)])
            others = sorted(set(r.holds) - {original})
            if others:
                return WorkloadOutcome(
                    r.workload_id, (), "skipped", f"still held by {', '.join(others)}"
                )
            if r.active:
                return WorkloadOutcome(r.workload_id, (), "applied", f"released; {r.state}")
        except BackstopError as exc:
            return WorkloadOutcome(r.workload_id, (), "failed", exc.message[:500])
        # The mark is gone first: a start that lands must never be undone by the next sync.
        try:
            done = await self._act(r, "cloud.start", f"resume of {original}", spec.correction_id)
        except BackstopError as exc:
            detail = f"released, but it did not start ({exc.message}); start it by hand"
            return WorkloadOutcome(r.workload_id, (), "failed", detail[:500])
        return WorkloadOutcome(r.workload_id, (), "applied", f"released; {done}")


def _summary(spec: CorrectionSpec, outcomes: Sequence[WorkloadOutcome]) -> str:
    if not outcomes:
        if spec.action is Action.RESUME:
            return f"nothing of {spec.reverts} here to undo"
        return "no cloud resource in scope"
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.outcome] = counts.get(o.outcome, 0) + 1
    verb = "released" if spec.action is Action.RESUME else "stopped and held"
    parts = [f"{n} {state}" for state, n in sorted(counts.items())]
    return f"{len(outcomes)} cloud resources {verb}: {', '.join(parts)}"
