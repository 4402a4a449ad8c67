"""Model history, as both SQL backends keep it: which workloads held each identified model.

Each workload seen holding a model with a ``model_id`` is a row of ``model_sightings``: first
seen, last seen, the node and the model as last reported. Reports write them in the same
transaction as the workloads (:data:`SIGHTING_UPSERT`, through the batch's rows), each pair at
most once per :data:`~backstop.controller.store.report_batch.SIGHTING_REFRESH_S`, so a report
every second costs no write per workload. :class:`SqlModels` reads and prunes them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from backstop.controller.store.rows import model_from_bytes
from backstop.core.fleet import ModelSighting

SIGHTING_UPSERT = """INSERT INTO model_sightings
        (model_id, workload_id, node_id, first_seen_s, last_seen_s, model)
    VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (model_id, workload_id) DO UPDATE SET node_id=excluded.node_id,
        last_seen_s=excluded.last_seen_s, model=excluded.model"""


class SqlModels(ABC):
    """The model-history half of the store over SQL."""

    @abstractmethod
    def _query(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
        """The rows one query returns."""

    @abstractmethod
    def _write(self, *statements: tuple[str, Sequence[object]]) -> list[int]:
        """Run the (query, arguments) statements in one transaction; each one's row count."""

    def list_model_sightings(self, model_prefix: str = "") -> list[ModelSighting]:
        """Every sighting of the models whose id starts with ``model_prefix`` (hex digits),
        oldest first."""
        rows = self._query(
            """SELECT model, workload_id, node_id, first_seen_s, last_seen_s
               FROM model_sightings WHERE model_id LIKE ? ORDER BY first_seen_s, workload_id""",
            (f"{model_prefix}%",),
        )
        return [
            ModelSighting(model_from_bytes(bytes(data)), str(wid), str(node), float(a), float(b))
            for data, wid, node, a, b in rows
        ]

    def prune_model_sightings(self, older_than_s: float) -> int:
        """Forget sightings last seen before ``older_than_s``; how many went."""
        (pruned,) = self._write(
            ("DELETE FROM model_sightings WHERE last_seen_s < ?", (older_than_s,))
        )
        return pruned
