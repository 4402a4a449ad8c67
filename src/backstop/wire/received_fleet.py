"""The fleet view of models as the CLI receives it (``backstop models``), converted once.

The JSON is the summary's message flattened: the model's own fields (``model_id``,
``architecture``, ``parameters``...) at the top beside ``copies``, ``tokens_per_second`` (``null``
when no copy's server reports it) and the rest; the documented contract scripts rely on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backstop.api.v1 import control_pb2
from backstop.core.fleet import ModelSummary
from backstop.wire.fleet_convert import summary_from_pb
from backstop.wire.json_form import message_json
from backstop.wire.received import JsonObject


@dataclass(frozen=True, slots=True)
class ReceivedModel:
    summary: ModelSummary
    json_data: JsonObject


@dataclass(frozen=True, slots=True)
class ReceivedSighting:
    """One workload that held the model, and when."""

    workload_id: str
    node_id: str
    first_seen_s: float
    last_seen_s: float
    running: bool
    json_data: JsonObject


def received_model(msg: control_pb2.ModelSummary) -> ReceivedModel:
    data: dict[str, Any] = message_json(msg, "Model")
    model = data.pop("model", {})
    data.setdefault("tokens_per_second", None)
    return ReceivedModel(summary_from_pb(msg), {**model, **data})


def received_sighting(msg: control_pb2.ModelSighting) -> ReceivedSighting:
    return ReceivedSighting(
        workload_id=msg.workload_id,
        node_id=msg.node_id,
        first_seen_s=msg.first_seen_s,
        last_seen_s=msg.last_seen_s,
        running=msg.running,
        json_data=message_json(msg, "ModelSighting"),
    )
