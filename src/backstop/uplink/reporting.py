"""What the agents that speak for many machines share (the operator's cluster agent, the cloud
agent): stateless report sequence numbers, the report loop, the session's life, and logged
acknowledgements."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from backstop.core.errors import BackstopError
from backstop.core.models import (
    Command,
    CommandAck,
    NodeInfo,
    Report,
    TargetState,
    WorkloadOutcome,
)
from backstop.core.tasks import run_until_one_fails
from backstop.uplink.identity import link_credentials
from backstop.uplink.peer_check import controller_check
from backstop.uplink.session import ControllerSession
from backstop.uplink.spool import ReportSpool

log = logging.getLogger(__name__)


def stateless_session(
    controller: str,
    inventory: Callable[[], NodeInfo],
    on_command: Callable[[Command], Awaitable[CommandAck]],
    *,
    insecure: bool,
    tls: Path,
    state_dir: Path,
    reconnect_max_s: float,
    sequence: ReportSequence | None = None,
) -> ControllerSession:
    """The controller session of an agent that keeps no command state: on every connect the
    controller sends each unacknowledged command again (handling one twice is harmless);
    reports wait in ``STATE_DIR/spool`` while the controller is away. A controller whose
    certificate is on the CA's revocation list (``TLS_DIR/crl.pem``) is refused."""
    return ControllerSession(
        controller,
        inventory,
        lambda: 0,
        on_command,
        reconnect_max_s=reconnect_max_s,
        credentials=link_credentials(insecure, tls),
        spool=ReportSpool(state_dir / "spool"),
        peer_check=controller_check(insecure, tls),
        adopt_report_sequence=sequence.adopt if sequence is not None else None,
    )


class ReportSequence:
    """Milliseconds since the epoch, strictly increasing: a restarted agent never reuses a
    report sequence number, and keeps no state for it."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        self._last = max(self._last + 1, time.time_ns() // 1_000_000)
        return self._last

    def adopt(self, stored: int) -> int | None:
        """Continue above ``stored`` (the controller's, from its Welcome) when it is ahead of
        the clock, so a jump another sender made cannot stall these reports; the old last
        sequence when it adopted, else None."""
        if stored < max(self._last + 1, time.time_ns() // 1_000_000):
            return None
        own, self._last = self._last, stored
        return own


async def run_with_reports(
    session: ControllerSession,
    snapshot: Callable[[], Awaitable[Report]],
    default_interval_s: float,
    what: str,
) -> None:
    """The controller stream, and a report every interval (the controller's Welcome sets it,
    else ``default_interval_s``), until cancelled. A failed snapshot is logged and skipped."""

    async def reports() -> None:
        while True:
            started = time.monotonic()
            try:
                session.send_report(await snapshot())
            except BackstopError as exc:
                log.warning("could not make a report", extra={"of": what, "error": exc.message})
            interval = session.report_interval_s or default_interval_s
            await asyncio.sleep(max(0.05, interval - (time.monotonic() - started)))

    tasks = [
        asyncio.create_task(session.run(), name="controller-session"),
        asyncio.create_task(reports(), name="reports"),
    ]
    try:
        await run_until_one_fails(tasks)
    finally:
        session.flush_spool()


def acknowledge(
    command: Command,
    state: TargetState,
    message: str,
    outcomes: Sequence[WorkloadOutcome] = (),
) -> CommandAck:
    """The acknowledgement of ``command``, logged."""
    cid = command.spec.correction_id
    log.info(
        "command acknowledged",
        extra={"correction_id": cid, "state": state.value, "detail": message},
    )
    return CommandAck(cid, command.sequence, state, message, tuple(outcomes))
