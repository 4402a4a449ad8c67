"""Bounds on one agent report, so that a node's key cannot flood or freeze its inventory.

A report carries at most ``MAX_WORKLOADS`` workloads, ``MAX_PIDS_PER_WORKLOAD`` pids and
``MAX_GPUS`` GPU uses per workload, and ``MAX_GPUS`` GPUs (a real node is far below each). Its
sequence is at most ``MAX_SEQUENCE`` (2**53: exact in every JSON reader, and far beyond any
real counter), and, once the node has a stored report, at most ``MAX_SEQUENCE_JUMP`` above
the highest sequence seen from it, plus one per millisecond it was away (agents that speak for
many machines number reports by the clock in milliseconds). A report past a bound ends its
stream with INVALID_ARGUMENT and a message saying which bound; nothing of it is stored, and
the refusal is audited (``report.refused``, counted per bound like every refusal).

What this protects: without it, one report numbered 10**9 made every later report of the real
agent look old. The real agent is not stalled by a jump within the bounds either: it adopts a
higher stored sequence from the controller's Welcome (``AgentState.adopt_report_sequence``).
"""

from __future__ import annotations

from backstop.api.v1 import agent_pb2
from backstop.core.errors import InvalidInput

MAX_WORKLOADS = 4096
MAX_PIDS_PER_WORKLOAD = 4096
MAX_GPUS = 64
MAX_SEQUENCE = 2**53
MAX_SEQUENCE_JUMP = 1_000_000


class ReportRefused(InvalidInput):
    """A well-formed report past a bound; ``bound`` names which (the refusal's class)."""

    def __init__(self, message: str, bound: str) -> None:
        super().__init__(message)
        self.bound = bound


def size_problem(report: agent_pb2.Report) -> tuple[str, str]:
    """Which size bound ``report`` exceeds and why (two empty strings if none)."""
    if len(report.workloads) > MAX_WORKLOADS:
        count = len(report.workloads)
        return "workloads", f"{count} workloads; at most {MAX_WORKLOADS} in one report"
    if len(report.gpus) > MAX_GPUS:
        return "gpus", f"{len(report.gpus)} GPUs; at most {MAX_GPUS} in one report"
    for w in report.workloads:
        if len(w.pids) > MAX_PIDS_PER_WORKLOAD:
            return "pids", (
                f"workload {w.workload_id[:64]!r} has {len(w.pids)} pids; "
                f"at most {MAX_PIDS_PER_WORKLOAD}"
            )
        if len(w.fingerprint.gpus) > MAX_GPUS:
            return "workload_gpus", (
                f"workload {w.workload_id[:64]!r} uses {len(w.fingerprint.gpus)} GPUs"
            )
    return "", ""


class SequenceGuard:
    """The sequence bounds of one stream: ``stored`` is the node's stored sequence when the
    stream began (0: none), ``away_s`` how long the node had been away."""

    def __init__(self, stored: int, away_s: float) -> None:
        self.highest = stored
        self.slack = MAX_SEQUENCE_JUMP + int(max(0.0, away_s) * 1000)

    def problem(self, sequence: int) -> tuple[str, str]:
        """Which bound ``sequence`` breaks and why (empty if none; it then counts as seen)."""
        if sequence > MAX_SEQUENCE:
            return "sequence_max", f"report sequence {sequence} is above 2**53"
        if self.highest and sequence > self.highest + self.slack:
            return "sequence_jump", (
                f"report sequence {sequence} is {sequence - self.highest} above the last one "
                f"seen from this node ({self.highest}); at most {self.slack}"
            )
        self.highest = max(self.highest, sequence)
        return "", ""


def check(report: agent_pb2.Report, guard: SequenceGuard) -> None:
    """Raise :class:`ReportRefused` for a report past a bound."""
    bound, problem = size_problem(report)
    if not bound:
        bound, problem = guard.problem(report.sequence)
    if bound:
        raise ReportRefused(problem + "; nothing of this report was stored", bound)
