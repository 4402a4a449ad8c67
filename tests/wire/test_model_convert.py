"""A workload's identified model on the wire: a round trip, and what is refused."""

from __future__ import annotations

import pytest

from backstop.api.v1 import types_pb2
from backstop.core.errors import InvalidInput
from backstop.core.models import IdentifiedModel
from backstop.wire.model_convert import model_from_pb, model_to_pb

MODEL = IdentifiedModel(
    model_id="ab" * 32,
    structure_id="cd" * 32,
    architecture="LlamaForCausalLM",
    name="meta-llama/Llama-3.1-8B",
    parameters=8_030_261_248,
    formats=("safetensors",),
    size_class="8B",
    context_length=131072,
    tensors=291,
    valid=True,
    bytes_read=4_700_000,
)


def test_round_trip() -> None:
    wire = types_pb2.ModelIdentity.FromString(model_to_pb(MODEL).SerializeToString())
    assert model_from_pb(wire) == MODEL


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("model_id", "not-a-digest", "SHA-256"),
        ("structure_id", "ab" * 31, "SHA-256"),
        ("name", "n" * 513, "longer than 512"),
        ("parameters", 2**64 - 1, "larger than"),
    ],
)
def test_bad_fields_are_refused(field: str, value: object, why: str) -> None:
    msg = model_to_pb(MODEL)
    setattr(msg, field, value)
    with pytest.raises(InvalidInput, match=why):
        model_from_pb(msg)
