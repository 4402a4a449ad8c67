"""The fleet view of models, worked out from the latest workloads and the model history.

``backstop models`` lists one :class:`~backstop.core.fleet.ModelSummary` per identified model:
its copies (workloads holding it in their nodes' latest reports), their nodes, GPUs, GPU
memory and generated tokens/s, and when it was first and last seen (from the sightings the
store keeps). A model no workload holds now still has a row, with no copies, as long as its
history lasts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from backstop.core.fleet import ModelSighting, ModelSummary
from backstop.core.models import IdentifiedModel, Workload


def summarize(
    workloads: Iterable[Workload], sightings: Sequence[ModelSighting]
) -> list[ModelSummary]:
    """One summary per model, those with the most copies first, then by model id."""
    holders: dict[str, list[Workload]] = {}
    models: dict[str, IdentifiedModel] = {}
    for w in workloads:
        model = w.fingerprint.model
        if model is not None and model.model_id:
            holders.setdefault(model.model_id, []).append(w)
            models[model.model_id] = model
    seen: dict[str, tuple[float, float]] = {}
    for s in sightings:
        first, last = seen.get(s.model.model_id, (s.first_seen_s, s.last_seen_s))
        seen[s.model.model_id] = (min(first, s.first_seen_s), max(last, s.last_seen_s))
        models.setdefault(s.model.model_id, s.model)
    rows = [_summary(models[mid], holders.get(mid, []), seen.get(mid)) for mid in models]
    return sorted(rows, key=lambda r: (-r.copies, r.model.model_id))


def history(
    workloads: Iterable[Workload], sightings: Sequence[ModelSighting]
) -> list[ModelSighting]:
    """The sightings, each marked running when its workload holds the model now."""
    now = {
        (w.fingerprint.model.model_id, w.workload_id)
        for w in workloads
        if w.fingerprint.model is not None
    }
    return [replace(s, running=(s.model.model_id, s.workload_id) in now) for s in sightings]


def _summary(
    model: IdentifiedModel, copies: list[Workload], seen: tuple[float, float] | None
) -> ModelSummary:
    gpus: dict[str, int] = {}
    rates: list[float] = []
    names: set[str] = set()
    for w in copies:
        for use in w.fingerprint.gpus:
            gpus[use.gpu_uuid] = gpus.get(use.gpu_uuid, 0) + use.used_memory_bytes
        if w.serving is not None:
            if w.serving.generated_tokens_per_s is not None:
                rates.append(w.serving.generated_tokens_per_s)
            names.update(n for n in w.serving.model_name.split(",") if n)
    first, last = seen if seen is not None else (0.0, 0.0)
    return ModelSummary(
        model=model,
        copies=len(copies),
        node_ids=tuple(sorted({w.node_id for w in copies})),
        gpu_uuids=tuple(sorted(gpus)),
        gpu_memory_bytes=sum(gpus.values()),
        tokens_per_second=sum(rates) if rates else None,
        served_names=tuple(sorted(names)),
        first_seen_s=first,
        last_seen_s=last,
    )
