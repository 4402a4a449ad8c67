"""A workload's serving telemetry between ``backstop.api.v1`` and :mod:`backstop.core.serving`.

Unset stays unset: a quantity the model server does not report is ``None`` on both sides,
never zero. Numbers are held to be finite and not negative; names to bounded printable text.
"""

from __future__ import annotations

from backstop.api.v1 import types_pb2
from backstop.core.serving import ServingStats
from backstop.wire.checks import finite, optional_quantities, set_present, text

MAX_MODEL_NAME = 512
_QUANTITIES = (
    "generated_tokens_per_s",
    "prompt_tokens_per_s",
    "requests_running",
    "requests_waiting",
    "inferences_per_s",
)


def serving_to_pb(stats: ServingStats) -> types_pb2.ServingStats:
    msg = types_pb2.ServingStats(
        server=stats.server,
        port=stats.port,
        model_name=stats.model_name,
        sampled_at_s=stats.sampled_at_s,
    )
    set_present(msg, stats, _QUANTITIES)
    return msg


def serving_from_pb(msg: types_pb2.ServingStats) -> ServingStats:
    quantities = optional_quantities(msg, _QUANTITIES)
    return ServingStats(
        server=text(msg.server, "serving server", 32),
        port=msg.port,
        model_name=text(msg.model_name, "served model name", MAX_MODEL_NAME),
        sampled_at_s=finite(msg.sampled_at_s, "serving sampled_at_s"),
        **quantities,
    )
