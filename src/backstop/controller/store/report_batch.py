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

from backstop.controller.store.rows import encoded_gpus, model_bytes, workload_bytes
from backstop.core.models import Report

SIGHTING_REFRESH_S = 60.0
"""How often a workload's sighting of its model is written again (its last-seen time)."""
MAX_REMEMBERED_SIGHTINGS = 100_000


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

    def sighting_rows(
        self, now_s: float, written: dict[tuple[str, str], float]
    ) -> list[tuple[str, str, str, float, float, bytes]]:
        """(model, workload, node, first seen, last seen, encoded model) of each workload that
        holds an identified model, unless ``written`` (model, workload -> when) says it was
        written less than ``SIGHTING_REFRESH_S`` ago; ``written`` is updated."""
        if len(written) > MAX_REMEMBERED_SIGHTINGS:
            for key in [k for k, at in written.items() if now_s - at >= SIGHTING_REFRESH_S]:
                del written[key]
        rows = []
        for node_id, report in self.latest.items():
            for w in report.workloads:
                model = w.fingerprint.model
                if model is None or not model.model_id:
                    continue
                key = (model.model_id, w.workload_id)
                if now_s - written.get(key, -SIGHTING_REFRESH_S) < SIGHTING_REFRESH_S:
                    continue
                written[key] = now_s
                rows.append(
                    (model.model_id, w.workload_id, node_id, now_s, now_s, model_bytes(model))
                )
        return rows


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
