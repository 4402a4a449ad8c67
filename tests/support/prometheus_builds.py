"""Prometheus's ``promtool`` and ``alertmanager``, built once from the Go module proxy and cached.

``promtool_binary()`` and ``alertmanager_binary()`` return the path of each program at its
pinned version (:data:`PROMTOOL`, :data:`ALERTMANAGER`: the Go module versions), building it with
``go install`` into ``${XDG_CACHE_HOME:-~/.cache}/backstop/<program>/<version>/`` the first
time. The build goes to a temporary directory and is renamed into place, so a half-built binary
is never used, and its duration is appended to ``build-times.tsv`` next to the version
directories. :func:`prebuild` builds one before the first collected test whose fixtures name it,
outside per-test timeouts. Tests that need one skip when Go is not installed and it is not
cached.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

GoProgram = tuple[str, str, str]
"""A program's name, its Go package and the module version to build."""

PROMTOOL: GoProgram = ("promtool", "github.com/prometheus/prometheus/cmd/promtool", "v0.316.0")
"""v0.316.0 is Prometheus 3.16.0's promtool."""
ALERTMANAGER: GoProgram = (
    "alertmanager",
    "github.com/prometheus/alertmanager/cmd/alertmanager",
    "v0.31.1",
)
"""The newest release ``go install`` builds: from v0.32 the web UI is embedded from files the
module does not carry (``ui/app/dist``)."""


def cache_root(name: str = "promtool") -> Path:
    """Where the builds of ``name`` are kept, one directory per version."""
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "backstop" / name


def go_binary(program: GoProgram) -> Path:
    """The cached build of ``program``, built first if missing (a few minutes, once)."""
    name, package, version = program
    root = cache_root(name)
    binary = root / version / name
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
                ["nice", "-n", "19", "go", "install", "-p", "2", f"{package}@{version}"],
                check=True,
                cwd=gobin,
                env=dict(os.environ, GOBIN=gobin),
            )
            binary.parent.mkdir(exist_ok=True)
            os.replace(Path(gobin) / name, binary)
        seconds = time.monotonic() - start
        when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with (root / "build-times.tsv").open("a") as times:
            times.write(f"{when}\t{name}\t{version}\t{seconds:.0f}\n")
    return binary


def promtool_binary() -> Path:
    return go_binary(PROMTOOL)


def alertmanager_binary() -> Path:
    return go_binary(ALERTMANAGER)


def prebuild(session: pytest.Session, fixture: str, build: Callable[[], Path]) -> None:
    """Build a program before the tests run when a collected test uses ``fixture`` and Go is
    there (its output shown: a first build takes minutes)."""
    if shutil.which("go") and any(
        fixture in getattr(item, "fixturenames", ()) for item in session.items
    ):
        capture = session.config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            build()
