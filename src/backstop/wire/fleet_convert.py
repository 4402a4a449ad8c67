"""The fleet view of models between ``backstop.api.v1`` and :mod:`backstop.core.fleet`."""

from __future__ import annotations

from backstop.api.v1 import control_pb2
from backstop.core.fleet import ModelSighting, ModelSummary
from backstop.wire.checks import optf
from backstop.wire.model_convert import model_from_pb, model_to_pb


def summary_to_pb(summary: ModelSummary) -> control_pb2.ModelSummary:
    msg = control_pb2.ModelSummary(
        model=model_to_pb(summary.model),
        copies=summary.copies,
        node_ids=list(summary.node_ids),
        gpu_uuids=list(summary.gpu_uuids),
        gpu_memory_bytes=summary.gpu_memory_bytes,
        served_names=list(summary.served_names),
        first_seen_s=summary.first_seen_s,
        last_seen_s=summary.last_seen_s,
    )
    if summary.tokens_per_second is not None:
        msg.tokens_per_second = summary.tokens_per_second
    return msg


def summary_from_pb(msg: control_pb2.ModelSummary) -> ModelSummary:
    return ModelSummary(
        model=model_from_pb(msg.model),
        copies=msg.copies,
        node_ids=tuple(msg.node_ids),
        gpu_uuids=tuple(msg.gpu_uuids),
        gpu_memory_bytes=msg.gpu_memory_bytes,
        tokens_per_second=optf(msg, "tokens_per_second"),
        served_names=tuple(msg.served_names),
        first_seen_s=msg.first_seen_s,
        last_seen_s=msg.last_seen_s,
    )


def sighting_to_pb(sighting: ModelSighting) -> control_pb2.ModelSighting:
    return control_pb2.ModelSighting(
        model_id=sighting.model.model_id,
        workload_id=sighting.workload_id,
        node_id=sighting.node_id,
        first_seen_s=sighting.first_seen_s,
        last_seen_s=sighting.last_seen_s,
        running=sighting.running,
    )
