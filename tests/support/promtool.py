"""Prometheus's ``promtool``, built once from the Go module proxy and cached by version.

``promtool_binary()`` returns the path of ``promtool`` at :data:`PROMTOOL_VERSION` (the Go
module version of github.com/prometheus/prometheus), building it with ``go install`` into
``${XDG_CACHE_HOME:-~/.cache}/backstop/promtool/<version>/`` the first time. The build goes to
a temporary directory and is renamed into place, so a half-built binary is never used, and
its duration is appended to ``build-times.tsv`` next to the version directories. Tests that
need it skip when Go is not installed and the binary is not cached.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

#: The Prometheus module version (v0.316.0 is Prometheus 3.16.0's promtool).
PROMTOOL_VERSION = "v0.316.0"
PROMTOOL_PACKAGE = "github.com/prometheus/prometheus/cmd/promtool"


def cache_root() -> Path:
    """Where promtool builds are kept, one directory per version."""
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "backstop" / "promtool"


def promtool_binary(version: str = PROMTOOL_VERSION) -> Path:
    """The cached promtool of ``version``, built first if missing (a few minutes, once)."""
    root = cache_root()
    binary = root / version / "promtool"
    if binary.exists():
        return binary
    if shutil.which("go") is None:
        raise FileNotFoundError(f"{binary} is not built and go is not on PATH to build it")
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; the others then find it
        if binary.exists():
            return binary
        start = time.monotonic()
        with tempfile.TemporaryDirectory(dir=root, prefix=".install.") as gobin:
            subprocess.run(
                ["nice", "-n", "19", "go", "install", "-p", "2", f"{PROMTOOL_PACKAGE}@{version}"],
                check=True,
                cwd=gobin,
                env=dict(os.environ, GOBIN=gobin),
            )
            binary.parent.mkdir(exist_ok=True)
            os.replace(Path(gobin) / "promtool", binary)
        seconds = time.monotonic() - start
        when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with (root / "build-times.tsv").open("a") as times:
            times.write(f"{when}\tpromtool\t{version}\t{seconds:.0f}\n")
    return binary
