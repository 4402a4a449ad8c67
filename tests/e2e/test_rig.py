"""The test rig's own promise: a daemon that dies while a test waits on it fails the wait at once,
with its log, instead of after the whole timeout with nothing to go on."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.cluster import LocalCluster, ProcessExited


def test_a_controller_that_exits_fails_the_wait_at_once_with_its_log(tmp_path: Path) -> None:
    local = LocalCluster(tmp_path)
    started = time.monotonic()
    try:
        with pytest.raises(ProcessExited, match="controller exited with 2") as failed:
            local.start_controller("127.0.0.1:0", "--store", "nosuchscheme://x")
        assert "nosuchscheme" in str(failed.value)  # the controller's own words, from its log
        assert time.monotonic() - started < 15  # well inside the 30 s the wait allows
    finally:
        local.stop()
