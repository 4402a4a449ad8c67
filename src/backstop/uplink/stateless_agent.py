"""What the agents that speak for many machines as one node are built on (the operator's
cluster agent, the cloud agent): :class:`StatelessAgent` owns their controller session, the
numbering of their reports, their inventory and report records, and the check of every
command against the trust policy, a resume at the quorum of what it undoes."""

from __future__ import annotations

import logging
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping

from backstop import __version__
from backstop.core.models import (
    Action,
    Command,
    CommandAck,
    CorrectionSpec,
    NodeInfo,
    Report,
    Workload,
)
from backstop.security.command_check import NOTHING_HERE, CommandCheck
from backstop.security.identities import TrustPolicyFile
from backstop.uplink.identity import LinkSettings, link_tls_dir
from backstop.uplink.reporting import ReportSequence, stateless_session

log = logging.getLogger(__name__)


class StatelessAgent(ABC):
    """One controller stream for an agent that speaks for many machines as node ``node_id``
    and keeps no command state: its session, its report numbering and the check of every
    command (signatures too when there is a trust policy). The link's security is checked by
    the subclass before it is built."""

    def __init__(self, settings: LinkSettings, node_id: str) -> None:
        self.node_id = node_id
        self._sequence = ReportSequence()
        policy = TrustPolicyFile(settings.trust_policy) if settings.trust_policy else None
        self._check = CommandCheck(policy)
        self.session = stateless_session(
            settings.controller,
            self.inventory,
            self.on_command,
            insecure=settings.insecure,
            tls=link_tls_dir(settings.tls_dir, settings.state_dir),
            state_dir=settings.state_dir,
            reconnect_max_s=settings.reconnect_max_s,
            sequence=self._sequence,
        )

    @abstractmethod
    def inventory(self) -> NodeInfo:
        """What the controller is told of this node on every connect."""

    @abstractmethod
    async def on_command(self, command: Command) -> CommandAck:
        """Apply one controller command and acknowledge it."""

    @abstractmethod
    async def undone_action(self, spec: CorrectionSpec) -> str | None:
        """The action a resume undoes (its quorum is the resume's): ``NOTHING_HERE`` when
        there is nothing to undo here, ``UNKNOWN`` when that cannot be read."""

    def node_info(self, labels: Mapping[str, str], capabilities: tuple[str, ...]) -> NodeInfo:
        """This node's inventory, with ``labels`` and ``capabilities``."""
        return NodeInfo(
            node_id=self.node_id,
            hostname=socket.gethostname(),
            agent_version=__version__,
            labels=labels,
            capabilities=capabilities,
        )

    def report(self, workloads: tuple[Workload, ...]) -> Report:
        """A report of ``workloads``, numbered now."""
        return Report(
            node_id=self.node_id,
            sequence=self._sequence.next(),
            sampled_at_s=time.time(),
            workloads=workloads,
            dropped_reports=self.session.dropped_reports,
        )

    async def refusal(self, command: Command) -> str:
        """Why ``command`` is refused (logged), or "" when it may be applied; a resume is
        checked against the quorum of the action it undoes."""
        spec = command.spec
        undone: str | None = NOTHING_HERE
        if spec.action is Action.RESUME and self._check.enforcing_signatures:
            undone = await self.undone_action(spec)
        problem = self._check.problem(command, reverts_action=undone)
        if problem:
            log.warning(
                "command refused",
                extra={"correction_id": spec.correction_id, "reason": problem},
            )
        return problem
