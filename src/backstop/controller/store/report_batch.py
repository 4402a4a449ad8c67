"""What a batch of reports changes, worked out once for every store backend.

Reports that arrive together are stored in one transaction (design: ingest throughput). Given
each node's last stored report sequence, :func:`plan_reports` decides per report whether it is
new, a repeat or from an unknown node, and gathers the rows to write: each node's new sequence
and latest workloads (only the newest report's workloads survive, as if each report had been
applied in turn) and every new report's GPU samples. The stores then write them with a few
batched statements instead of several per report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from backstop.controller.store.rows import encoded_gpus, workload_bytes
from backstop.core.models import Report


@dataclass
class ReportBatch:
    results: list[bool | None] = field(default_factory=list)
    """Per report, in order: True stored, False a repeat, None from an unknown node."""
    latest: dict[str, Report] = field(default_factory=dict)
    """Per node with a new report: the newest one (its sequence and workloads are kept)."""
    gpu_rows: list[tuple[str, str, float, bytes]] = field(default_factory=list)
    """(node, GPU uuid, sampled at, encoded sample) of every new report."""

    def node_rows(self, now_s: float) -> list[tuple[int, float, int, str]]:
        """(sequence, last seen, dropped reports, node) for each node with a new report."""
        return [(r.sequence, now_s, r.dropped_reports, n) for n, r in self.latest.items()]

    def workload_rows(self, now_s: float) -> list[tuple[str, str, str, bytes, float]]:
        """(workload, node, model hash, encoded workload, updated) of each node's newest
        report: they replace all of the node's workloads."""
        return [
            (
                w.workload_id,
                node_id,
                w.fingerprint.model_hash,
                workload_bytes(w),
                now_s,
            )
            for node_id, report in self.latest.items()
            for w in report.workloads
        ]


def plan_reports(reports: Sequence[Report], last_sequence: Mapping[str, int]) -> ReportBatch:
    """Decide each report against the stored sequences (``last_sequence``: node -> sequence,
    only for known nodes); reports of one node are taken in the order given."""
    batch = ReportBatch()
    last = dict(last_sequence)
    for report in reports:
        node_id = report.node_id
        if node_id not in last:
            batch.results.append(None)
            continue
        if report.sequence and report.sequence <= last[node_id]:
            batch.results.append(False)
            continue
        last[node_id] = report.sequence
        batch.latest[node_id] = report
        batch.gpu_rows.extend(
            (node_id, uuid, report.sampled_at_s, data) for uuid, data in encoded_gpus(report)
        )
        batch.results.append(True)
    return batch
