"""The fleet view of models: where each identified model runs now and has run before.

A :class:`ModelSighting` is one workload seen holding one model, from the first report that
showed it to the latest; the controller keeps them as the model's history. A
:class:`ModelSummary` is one row of ``backstop models``: a model with its copies now.
"""

from __future__ import annotations

from dataclasses import dataclass

from backstop.core.models import IdentifiedModel


@dataclass(frozen=True, slots=True)
class ModelSighting:
    """One workload that held the model, and when."""

    model: IdentifiedModel
    workload_id: str
    node_id: str
    first_seen_s: float
    last_seen_s: float
    running: bool = False
    """Whether the workload holds the model in the node's latest report."""


@dataclass(frozen=True, slots=True)
class ModelSummary:
    """A model and its copies: the workloads holding it in their nodes' latest reports."""

    model: IdentifiedModel
    copies: int
    node_ids: tuple[str, ...]
    gpu_uuids: tuple[str, ...]
    gpu_memory_bytes: int
    tokens_per_second: float | None
    """Generated tokens/s summed over the copies whose server reports it (``None``: none do)."""
    served_names: tuple[str, ...]
    """The names its servers serve it under (vLLM's ``model_name`` and the like)."""
    first_seen_s: float
    last_seen_s: float
