"""The node daemon: sample, report, enforce; serve /metrics and /healthz.

Tasks on one event loop: the controller session (stream, reconnects), the enforcement queue,
and the sampling loop. Blocking work (NVML, /proc, signals) runs in worker threads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

from backstop import __version__
from backstop.agent import dcgm_series, workload_series
from backstop.agent.actuators.workload_actuator import ProcessActuator
from backstop.agent.collectors.nvml import NvmlBackend
from backstop.agent.collectors.processes import ProcessCollector
from backstop.agent.discovery import WorkloadDiscovery
from backstop.agent.enforcer import Enforcer
from backstop.agent.kubelet_client import PodResourcesClient
from backstop.agent.network_use import NetworkTracker
from backstop.agent.node_enforcement import NodeEnforcement
from backstop.agent.node_policies import NodePolicies
from backstop.agent.pod_attribution import PodAttribution
from backstop.agent.sampler import NodeSample, Sampler
from backstop.agent.serving.tracker import ServingTracker
from backstop.agent.state import AgentState
from backstop.agent.verifier import CommandVerifier
from backstop.core.models import Command, CommandAck, NodeInfo, Report, Workload
from backstop.core.settings import AgentSettings
from backstop.core.tasks import run_until_one_fails
from backstop.security.audit import JOURNAL_FILE
from backstop.security.audit_file import FileAuditLog
from backstop.security.identities import TrustPolicyFile
from backstop.telemetry import sd_notify
from backstop.telemetry.endpoint import TelemetryServer
from backstop.uplink.identity import check_link_security, link_credentials, link_tls_dir
from backstop.uplink.peer_check import controller_check
from backstop.uplink.session import ControllerSession
from backstop.uplink.spool import ReportSpool

log = logging.getLogger(__name__)

READY_WAIT_S = 5.0
"""How long the agent, running, waits for the controller before it tells systemd it is ready."""


def _check_security_settings(settings: AgentSettings) -> None:
    check_link_security(settings, who="node", enrol_hint="backstop agent enroll")


def _pod_attribution(settings: AgentSettings) -> PodAttribution | None:
    socket_path, links = settings.pod_resources_socket, settings.container_logs_dir
    if not socket_path and links is None:
        return None
    kubelet = PodResourcesClient(socket_path) if socket_path else None
    return PodAttribution(kubelet, links)


class AgentDaemon:
    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
        self.node_id = settings.node_id or socket.gethostname()
        self.state = AgentState(settings.state_dir)
        self.nvml = NvmlBackend(settings.nvml_library or None)
        self.pods = _pod_attribution(settings)
        self.processes = ProcessCollector(proc_root=settings.proc_root, use_events=True)
        self.sampler = Sampler(
            self.nvml,
            self.processes,
            WorkloadDiscovery(self.node_id, proc_root=settings.proc_root),
            cgroup_prefixes=settings.cgroup_prefixes,
            serving=ServingTracker(proc_root=settings.proc_root),
            pods=self.pods,
            network=NetworkTracker(proc_root=settings.proc_root),
        )
        self.actuator = ProcessActuator(
            proc_root=settings.proc_root, default_grace_s=settings.default_grace_s
        )
        _check_security_settings(settings)
        policy = TrustPolicyFile(settings.trust_policy) if settings.trust_policy else None
        self.journal = FileAuditLog(settings.state_dir / JOURNAL_FILE)
        self.enforcer = Enforcer(
            self.node_id,
            self.state,
            self._fresh_workloads,
            self.actuator,
            self.nvml,
            verifier=CommandVerifier(policy),
            journal=self.journal,
            default_grace_s=settings.default_grace_s,
            node_labels=settings.labels,
        )
        self.node_enforcement = NodeEnforcement(
            self.node_id,
            self.enforcer,
            NodePolicies(settings.state_dir, policy),
            self.state,
            settings.labels,
        )
        tls = link_tls_dir(settings.tls_dir, settings.state_dir)
        credentials = link_credentials(settings.insecure, tls)
        peer_check = controller_check(settings.insecure, tls, settings.crl)
        self.session = ControllerSession(
            settings.controller,
            self.inventory,
            # every unacknowledged command, whatever its number: a controller on a lost or
            # restored store numbers from 1 again; one handled already gets its stored ack
            lambda: 0,
            self._on_command,
            reconnect_max_s=settings.reconnect_max_s,
            credentials=credentials,
            on_connected=self.enforcer.recent_acks,
            spool=ReportSpool(settings.state_dir / "spool", max_bytes=settings.spool_max_bytes),
            peer_check=peer_check,
            heads=lambda: (self.enforcer.witnessed_head(), self.enforcer.journal_head()),
            on_policies=self.node_enforcement.on_policies,
            node_policies=self.node_enforcement.kept,
            adopt_report_sequence=self.state.adopt_report_sequence,
        )
        self.latest: NodeSample | None = None
        self._capabilities: tuple[str, ...] = ()

    def inventory(self) -> NodeInfo:
        return NodeInfo(
            node_id=self.node_id,
            hostname=socket.gethostname(),
            agent_version=__version__,
            labels=dict(self.settings.labels),
            gpus=self.latest.gpus if self.latest else (),
            nvml_available=self.nvml.available,
            capabilities=self._capabilities,
        )

    def _fresh_workloads(self) -> list[Workload]:
        sample = self.sampler.sample()
        self.latest = sample
        return list(sample.workloads)

    async def _on_command(self, command: Command) -> CommandAck:
        return await self.enforcer.submit(command)

    def _interval(self) -> float:
        observe = self.enforcer.observe
        if observe is not None and observe.until_s > time.time():
            return observe.interval_s
        return self.session.report_interval_s or self.settings.report_interval_s

    async def _sample_loop(self) -> None:
        while True:
            started = time.monotonic()
            sample = await asyncio.to_thread(self.sampler.sample)
            self.latest = sample
            await self.enforcer.reconcile(sample.workloads)
            await self.node_enforcement.on_sample(sample.workloads, self.session.connected.is_set())
            report = Report(
                node_id=self.node_id,
                sequence=self.state.next_report_sequence(),
                sampled_at_s=sample.sampled_at_s,
                gpus=sample.gpus,
                workloads=tuple(self.enforcer.annotate(sample.workloads)),
                dropped_reports=self.session.dropped_reports,
                journal_head=self.enforcer.journal_head(),
                witnessed_audit_head=self.enforcer.witnessed_head(),
            )
            self.session.send_report(report)
            workload_series.SERIES.publish(report.workloads)
            if report.sequence % 5 == 0:
                await asyncio.to_thread(self.session.flush_spool)
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(0.05, self._interval() - elapsed))

    async def _lease_loop(self) -> None:
        """Fail closed when the controller has been silent for longer than the lease."""
        lease = self.settings.lease_s
        started = time.time()
        while True:
            await asyncio.sleep(min(1.0, lease / 4))
            heard = self.session.last_contact_s or started
            silent = time.time() - heard
            engaged = self.enforcer.lease_engaged()
            if silent > lease and not engaged:
                await self.enforcer.engage_lease(self.settings.lease_selector, silent)
            elif silent <= lease and engaged and self.session.connected.is_set():
                await self.enforcer.lift_lease()

    def _service_status(self) -> str:
        link = "connected to" if self.session.connected.is_set() else "waiting for"
        gpus = len(self.latest.gpus) if self.latest else 0
        return f"{link} controller {self.settings.controller}; {gpus} GPUs"

    def _healthy(self) -> tuple[bool, str]:
        if not self.session.connected.is_set():
            return False, "not connected to the controller"
        return True, "ok"

    def _detect_capabilities(self) -> tuple[str, ...]:
        caps = list(self.actuator.mechanisms)
        if self.nvml.available:
            caps.append("nvml.power_limit")
        return tuple(caps)

    async def run(self) -> None:
        telemetry = (  # bound first: a busy port stops the start with a message
            TelemetryServer(
                self.settings.metrics_listen,
                self._healthy,
                labels={"node": self.node_id},
                extra=dcgm_series.SERIES.exposition,
            )
            if self.settings.metrics_listen
            else None
        )
        if not self.nvml.start():
            log.warning(
                "NVML is not available: reporting without GPUs", extra={"node": self.node_id}
            )
        self._capabilities = self._detect_capabilities()
        self.latest = await asyncio.to_thread(self.sampler.sample)
        if telemetry is not None:
            telemetry.start()
        log.info(
            "agent started",
            extra={
                "node": self.node_id,
                "pid": os.getpid(),
                "controller": self.settings.controller,
                "gpus": len(self.latest.gpus),
                "workloads": len(self.latest.workloads),
            },
        )
        tasks = [asyncio.create_task(self.enforcer.run(), name="enforcer")]
        recovered = await self.enforcer.recover()
        if recovered:
            log.warning(
                "finished commands interrupted by a restart", extra={"count": len(recovered)}
            )
        if self.settings.lease_s > 0:
            tasks.append(asyncio.create_task(self._lease_loop(), name="lease"))
        tasks += [
            asyncio.create_task(self.session.run(), name="session"),
            asyncio.create_task(self._sample_loop(), name="sampler"),
        ]
        try:
            connected = self.session.connected.wait
            async with sd_notify.serving(self._service_status, connected, READY_WAIT_S):
                await run_until_one_fails(tasks)
        finally:
            if telemetry is not None:
                telemetry.stop()
            self.nvml.close()
            self.processes.close()
            if self.pods is not None:
                self.pods.close()
            self.journal.close()
