"""CPU quotas are holds: overlapping throttles, resumed in any order, leave the workload capped
until the last goes, and the last resume restores the workload's own ``cpu.max``.

The cpu controller is not always on the cgroup2 mount (here it is bound to cgroup v1), so
the child process is moved into a real scratch cgroup of its own, and the tree the agent
is pointed at is a directory laid out as the kernel lays it out for that cgroup path, with
``cpu.max`` a plain file: the real enforcer, throttler and actuator read and write it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from backstop.agent.actuators.workload_actuator import ProcessActuator
from backstop.agent.enforcer import Enforcer
from backstop.agent.state import AgentState
from backstop.core.models import Action, ActionParams, Command, CorrectionSpec, Scope, TargetState
from backstop.wire.correction_convert import spec_bytes
from tests.agent.enforcer_harness import workloads_fixture  # noqa: F401 - used by name
from tests.support.cgroups import scratch_cgroup
from tests.support.workloads import WorkloadFactory, WorkloadProcess

OWN = "max 100000"


def _tree(root: Path, pid: int) -> Path:
    """A cgroup2 tree under ``root`` holding ``pid``'s cgroup, with only ``pid`` in it."""
    line = next(
        ln for ln in Path(f"/proc/{pid}/cgroup").read_text().splitlines() if ln.startswith("0::")
    )
    directory = root / line.removeprefix("0::").lstrip("/")
    directory.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    (directory / "cgroup.procs").write_text(f"{pid}\n")
    (directory / "cpu.max").write_text(OWN + "\n")
    return directory / "cpu.max"


def _command(cid: str, action: Action, cores: float | None = None, reverts: str = "") -> Command:
    now = time.time()
    spec = CorrectionSpec(
        correction_id=cid,
        action=action,
        scope=Scope(workload_ids=("wl-cpu",)),
        reason="test",
        issuer="alice",
        created_at_s=now,
        expires_at_s=now + 600,
        params=ActionParams(cpu_fraction=cores),
        reverts=reverts,
    )
    return Command(0, spec, spec_bytes(spec))


@pytest.mark.parametrize("first_resumed", ["cor-a0000001", "cor-b0000002"])
def test_overlapping_cpu_throttles_restore_the_workloads_own_quota_last(
    tmp_path: Path, workloads: WorkloadFactory, first_resumed: str
) -> None:
    victim = workloads.start()
    with scratch_cgroup("backstop-cpu") as own:
        (own / "cgroup.procs").write_text(f"{victim.pid}\n")
        _run(tmp_path, victim, first_resumed)


def _run(tmp_path: Path, victim: WorkloadProcess, first_resumed: str) -> None:
    cpu_max = _tree(tmp_path / "cgroup", victim.pid)
    enforcer = Enforcer(
        "node-cpu",
        AgentState(tmp_path / "state"),
        lambda: [victim.as_workload("wl-cpu", "node-cpu")],
        ProcessActuator(cgroup_root=tmp_path / "cgroup"),
        None,
    )
    later = "cor-b0000002" if first_resumed == "cor-a0000001" else "cor-a0000001"

    async def scenario() -> None:
        runner = asyncio.create_task(enforcer.run())
        try:
            for cid, cores in (("cor-a0000001", 0.5), ("cor-b0000002", 0.25)):
                ack = await enforcer.submit(_command(cid, Action.THROTTLE, cores))
                assert ack.state is TargetState.APPLIED, ack.message
            assert cpu_max.read_text().split() == ["25000", "100000"]  # the strictest

            ack = await enforcer.submit(
                _command("cor-r0000001", Action.RESUME, reverts=first_resumed)
            )
            assert ack.state is TargetState.APPLIED, ack.message
            assert cpu_max.read_text().split() != OWN.split()  # the other still holds it
            assert f"cpu.max stays capped by {later}" in ack.outcomes[0].detail

            ack = await enforcer.submit(_command("cor-r0000002", Action.RESUME, reverts=later))
            assert ack.state is TargetState.APPLIED, ack.message
            assert cpu_max.read_text().split() == OWN.split()  # the workload's own, at last
        finally:
            runner.cancel()

    asyncio.run(scenario())
