"""What workload discovery remembers about one process incarnation ``(pid, create_time)``:
its network namespace, when its fds and maps were last scanned, the LISTEN sockets and the
weights found in it, and the derived strings it keeps so they are not computed again."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from backstop.agent.fingerprint.framework import FrameworkMatch
from backstop.agent.fingerprint.model_identity import FileModel
from backstop.core.models import WeightsFile

MAX_WEIGHTS_PER_PROCESS = 64
"""Weights files kept per process; the oldest go first."""


@dataclass(slots=True)
class ProcState:
    """What discovery remembers about one process incarnation."""

    create_time: float
    netns: str | None
    fd_scanned_at: float | None = None
    listen_inodes: frozenset[int] = frozenset()
    content_scanned_at: float | None = None
    libraries: tuple[str, ...] = ()
    weights: dict[str, WeightsFile] = field(default_factory=dict)
    models: dict[str, FileModel] = field(default_factory=dict)
    """Per weights path, what identity knows of the file (see ``model_identity``)."""
    redacted: tuple[tuple[str, ...], tuple[str, ...]] | None = None
    """(cmdline, redacted cmdline) as last computed."""
    framework: tuple[str, tuple[str, ...], FrameworkMatch] | None = None
    """(exe, cmdline, match) as last computed; recomputed when any of them changes."""

    def remember(self, found: Mapping[str, tuple[WeightsFile, FileModel | None]]) -> None:
        """Keep what a scan found, newest last; beyond :data:`MAX_WEIGHTS_PER_PROCESS`, the
        oldest go."""
        for path, (weights, model) in found.items():
            self.weights.pop(path, None)
            self.weights[path] = weights
            self.models.pop(path, None)
            if model is not None:
                self.models[path] = model
        while len(self.weights) > MAX_WEIGHTS_PER_PROCESS:
            oldest = next(iter(self.weights))
            self.weights.pop(oldest)
            self.models.pop(oldest, None)
