"""``--wait`` and ``status --watch`` say only what is true, and outlive the controller.

node-a's agent is stopped (SIGSTOP) while a pause is sent to it: the command sits in its
socket and the target stays dispatched (the controller waits 60 s for an ack).
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import time

from tests.cli.conftest import ACK_TIMEOUT, Rig
from tests.support.cluster import wait_for

PAUSE_A = ("pause", "--node", "node-a", "--reason", "incident 9", "--yes")


def _dispatched(rig: Rig) -> dict[str, object] | None:
    listed = rig.cluster.json("corrections")
    if listed and listed[0]["state"] == "dispatched":
        return dict(listed[0])
    return None


def test_a_wait_that_times_out_says_what_is_outstanding_and_until_when(rig: Rig) -> None:
    rig.stop_agent("node-a")
    result = rig.cluster.cli(*PAUSE_A, "--wait", "--timeout", "3")
    assert result.code == 1, result.out + result.err
    assert "Traceback" not in result.err
    assert "completed" not in result.out
    (correction,) = rig.cluster.json("corrections")
    expiry = datetime.datetime.fromtimestamp(correction["spec"]["expires_at_s"], datetime.UTC)
    assert "not finished after 3 s; the correction is dispatched\n" in result.out
    assert "outstanding: 1 of 1 target(s)\n  node-a               dispatched" in result.out
    assert (
        f"delivery is tried until {expiry.isoformat(timespec='seconds').replace('+00:00', 'Z')} "
        "(the correction's expiry)"
    ) in result.out


def test_wait_and_watch_outlive_a_controller_restart(rig: Rig) -> None:
    rig.stop_agent("node-a")
    env = {
        "BACKSTOP_CONTROLLER": rig.cluster.address,
        "BACKSTOP_INSECURE": "1",
        "BACKSTOP_USER": "e2e",
    }
    cli = [sys.executable, "-m", "backstop"]
    waiting = subprocess.Popen(
        [*cli, *PAUSE_A, "--wait", "--timeout", "90"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    try:
        correction = wait_for(lambda: _dispatched(rig), 20, "the pause to be dispatched")
        cid = str(correction["spec"]["correction_id"])  # type: ignore[index]
        watching = subprocess.Popen(
            [*cli, "status", cid, "--watch", "--timeout", "90"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        time.sleep(2.0)  # both are watching now
        rig.cluster.kill_controller()
        time.sleep(1.0)  # both see it go
        rig.cluster.start_controller(rig.cluster.address, *ACK_TIMEOUT)
        rig.continue_agent("node-a")
        out, err = waiting.communicate(timeout=90)
        watched_out, watched_err = watching.communicate(timeout=90)
    finally:
        for proc in (waiting, locals().get("watching")):
            if isinstance(proc, subprocess.Popen) and proc.poll() is None:
                proc.kill()
    assert waiting.returncode == 0, out + err
    assert "lost the controller" in err
    assert "Traceback" not in err
    assert out.rstrip().splitlines()[-1].startswith("completed: ")
    assert "node-a               applied" in out
    assert watching.returncode == 0, watched_out + watched_err
    assert "lost the controller" in watched_err
    assert watched_out.rstrip().splitlines()[-1].startswith("completed: ")
    final = rig.cluster.json("status", cid)
    assert final["state"] == "completed"
