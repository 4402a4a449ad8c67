"""The agent's durable state: sequence numbers and what it applied, for resume and restarts.

One JSON file in the state directory, replaced atomically (write, fsync, rename, fsync dir) on
every change, so a crash leaves either the old or the new state, never a torn one. Report
sequence numbers are reserved in blocks so the file is not rewritten for every report, and a
restarted agent never reuses a number (the controller deduplicates on them).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backstop.core.errors import StoreError

log = logging.getLogger(__name__)

STATE_FILE = "agent-state.json"
REPORT_SEQUENCE_BLOCK = 1000
KEEP_CORRECTIONS = 500


@dataclass(slots=True)
class AppliedWorkload:
    """How one workload was changed, so the change can be undone exactly."""

    workload_id: str
    root_pid: int
    pids: list[int]
    mechanism: str
    """cgroup.freeze | sigstop | nvml.power_limit | cpu.max | signals"""
    cgroup: str = ""
    previous_cpu_max: str = ""
    started_at_s: float = 0.0


@dataclass(slots=True)
class AppliedCorrection:
    correction_id: str
    action: str
    sequence: int
    spec: str
    """The delivered CorrectionSpec bytes, hex-encoded (scope for re-application)."""
    expires_at_s: float
    ack_state: str
    ack_message: str
    ack_outcomes: list[dict[str, Any]] = field(default_factory=list)
    workloads: list[AppliedWorkload] = field(default_factory=list)
    previous_power_mw: dict[str, int] = field(default_factory=dict)
    reverted: bool = False


class AgentState:
    """Load-modify-save store of the agent's state; thread-safe."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.path = state_dir / STATE_FILE
        self._lock = threading.Lock()
        self.last_command_sequence = 0
        self._report_sequence = 0
        self._reserved_until = 0
        self.corrections: dict[str, AppliedCorrection] = {}
        self.original_power_mw: dict[str, int] = {}
        """Per GPU uuid: the power limit it had before Backstop first capped it."""
        self._load()

    def _load(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            raw = self.path.read_text() if self.path.exists() else ""
        except OSError as exc:
            raise StoreError(f"cannot use state directory {self.dir}: {exc}") from exc
        if not raw:
            return
        try:
            data = json.loads(raw)
            self.last_command_sequence = int(data["last_command_sequence"])
            self._report_sequence = self._reserved_until = int(data["reserved_report_sequence"])
            self.original_power_mw = {
                k: int(v) for k, v in data.get("original_power_mw", {}).items()
            }
            for item in data.get("corrections", []):
                workloads = [AppliedWorkload(**w) for w in item.pop("workloads", [])]
                applied = AppliedCorrection(**item, workloads=workloads)
                self.corrections[applied.correction_id] = applied
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(
                f"agent state {self.path} is unreadable ({exc}); move it aside to start afresh"
            ) from exc

    def _save_locked(self) -> None:
        # replay protection needs every correction id until it expires, and the newest ones
        ordered = sorted(self.corrections.values(), key=lambda c: c.sequence)
        now = time.time()
        kept = [
            c for i, c in enumerate(ordered)
            if c.expires_at_s > now or i >= len(ordered) - KEEP_CORRECTIONS
        ]  # fmt: skip
        data = {
            "last_command_sequence": self.last_command_sequence,
            "reserved_report_sequence": self._reserved_until,
            "original_power_mw": self.original_power_mw,
            "corrections": [asdict(c) for c in kept],
        }
        tmp = self.path.with_suffix(".tmp")
        try:
            with open(tmp, "w") as fh:
                json.dump(data, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(self.path)
            dir_fd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise StoreError(f"cannot write agent state {self.path}: {exc}") from exc

    def next_report_sequence(self) -> int:
        with self._lock:
            self._report_sequence += 1
            if self._report_sequence > self._reserved_until:
                self._reserved_until = self._report_sequence + REPORT_SEQUENCE_BLOCK
                self._save_locked()
            return self._report_sequence

    def adopt_report_sequence(self, stored: int) -> int | None:
        """The controller has stored reports of this node up to ``stored``: when that is at or
        above this agent's next sequence (its state was lost, or another sender holds this
        node's identity), continue above it, so these reports are not dropped as old. Returns
        the agent's own last sequence when it adopted, else None."""
        with self._lock:
            if stored <= self._report_sequence:
                return None
            own, self._report_sequence = self._report_sequence, stored
            if stored >= self._reserved_until:
                self._reserved_until = stored + REPORT_SEQUENCE_BLOCK
                self._save_locked()
            return own

    def record(self, applied: AppliedCorrection) -> None:
        with self._lock:
            self.corrections[applied.correction_id] = applied
            self.last_command_sequence = max(self.last_command_sequence, applied.sequence)
            self._save_locked()

    def save(self) -> None:
        with self._lock:
            self._save_locked()

    def mark_reverted(self, correction_id: str) -> None:
        with self._lock:
            if correction_id in self.corrections:
                self.corrections[correction_id].reverted = True
                self._save_locked()

    def by_sequence(self, sequence: int) -> AppliedCorrection | None:
        with self._lock:
            for c in self.corrections.values():
                if c.sequence == sequence:
                    return c
            return None

    def active(self, now_s: float) -> list[AppliedCorrection]:
        """Corrections still in force: applied, not reverted, not expired."""
        with self._lock:
            return [
                c
                for c in sorted(self.corrections.values(), key=lambda c: c.sequence)
                if not c.reverted and c.ack_state == "applied" and c.expires_at_s > now_s
            ]
