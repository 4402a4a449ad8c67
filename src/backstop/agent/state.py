"""The agent's durable state: what it handled and applied, for replay checks, resume, restarts.

Every handled correction is kept at least until its signed expiry: replay protection rests on
that (a correction id seen before is refused), not on the unsigned delivery sequence, which is
kept only for information. The newest controller audit heads the agent witnessed are kept too.

One JSON file in the state directory, replaced atomically (write, fsync, rename, fsync dir) on
every change, so a crash leaves either the old or the new state, never a torn one. Report
sequence numbers are reserved in blocks so the file is not rewritten for every report, and a
restarted agent never reuses a number (the controller deduplicates on them).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backstop.core.errors import StoreError
from backstop.core.files import write_atomically

log = logging.getLogger(__name__)

STATE_FILE = "agent-state.json"
REPORT_SEQUENCE_BLOCK = 1000
KEEP_CORRECTIONS = 500
KEEP_WITNESSED_HEADS = 64


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
    handled_at_s: float = 0.0
    """When this agent first handled it (orders holds and acks; sequences may restart)."""
    in_force: bool = True
    """False for a correction whose workload criteria matched nothing here: not re-applied."""

    @property
    def workload_ids(self) -> set[str]:
        return {w.workload_id for w in self.workloads}


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
        self.witnessed_heads: dict[int, str] = {}
        """The newest controller audit heads received with commands: index -> hash."""
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
            self.witnessed_heads = {
                int(k): str(v) for k, v in data.get("witnessed_heads", {}).items()
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
        # replay protection needs every correction id until it expires (the signed expiry is at
        # most seven days after the signed creation, so this is bounded); the newest are kept
        # beyond that for their acks
        ordered = sorted(self.corrections.values(), key=handled_order)
        now = time.time()
        kept = [
            c for i, c in enumerate(ordered)
            if c.expires_at_s > now or i >= len(ordered) - KEEP_CORRECTIONS
        ]  # fmt: skip
        data = {
            "last_command_sequence": self.last_command_sequence,
            "reserved_report_sequence": self._reserved_until,
            "original_power_mw": self.original_power_mw,
            "witnessed_heads": {str(k): v for k, v in sorted(self.witnessed_heads.items())},
            "corrections": [asdict(c) for c in kept],
        }
        text = json.dumps(data, indent=1).encode()
        write_atomically(self.path, text, mode=0o600, what="agent state")

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
            prior = self.corrections.get(applied.correction_id)
            if not applied.handled_at_s:
                applied.handled_at_s = prior.handled_at_s if prior else time.time()
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

    def active(self, now_s: float) -> list[AppliedCorrection]:
        """Corrections still in force and re-applied: applied, not reverted, not expired."""
        return [c for c in self.holding(now_s) if c.ack_state == "applied"]

    def holding(self, now_s: float) -> list[AppliedCorrection]:
        """Corrections whose effects hold, oldest first: applied (or partly: failed), not
        reverted, not expired, in force."""
        with self._lock:
            return [
                c
                for c in sorted(self.corrections.values(), key=handled_order)
                if not c.reverted
                and c.in_force
                and c.ack_state in ("applied", "failed")
                and c.expires_at_s > now_s
            ]

    def witness(self, seq: int, head_hash: str) -> str:
        """Keep a controller audit head received with a command. The hash already witnessed
        at ``seq`` when it differs (a rewritten controller log), else ''."""
        with self._lock:
            known = self.witnessed_heads.get(seq)
            if known is not None:
                return known if known != head_hash else ""
            self.witnessed_heads[seq] = head_hash
            for old in sorted(self.witnessed_heads)[:-KEEP_WITNESSED_HEADS]:
                del self.witnessed_heads[old]
            self._save_locked()
            return ""

    def newest_witnessed(self) -> tuple[int, str]:
        """The newest controller audit head witnessed: (index, hash), ``(0, "")`` if none."""
        with self._lock:
            if not self.witnessed_heads:
                return 0, ""
            seq = max(self.witnessed_heads)
            return seq, self.witnessed_heads[seq]


def handled_order(c: AppliedCorrection) -> tuple[float, int]:
    """Oldest first: when handled here, then (for state written before that) sequence."""
    return c.handled_at_s, c.sequence
