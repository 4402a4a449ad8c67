"""A workload's identified model between ``backstop.api.v1`` and ``backstop.core.models``.

Held to the same bounds as the rest of a report: identifiers are hex digests, names and
reasons bounded text, counts within the stores' integers.
"""

from __future__ import annotations

import dataclasses
import string
from typing import Any

from backstop.api.v1 import types_pb2
from backstop.core.errors import InvalidInput
from backstop.core.models import IdentifiedModel
from backstop.wire.checks import counter, text

MAX_FORMATS = 8
_HEX = frozenset(string.hexdigits.lower())
_TEXT_LIMITS = {
    "architecture": 128,
    "name": 512,
    "quantisation": 64,
    "size_class": 16,
    "invalid_reason": 1024,
}
_COUNTERS = ("parameters", "context_length", "bytes_read")
_DIGESTS = ("model_id", "structure_id")


def model_to_pb(model: IdentifiedModel) -> types_pb2.ModelIdentity:
    values = {f.name: getattr(model, f.name) for f in dataclasses.fields(model)}
    values["formats"] = list(model.formats)
    return types_pb2.ModelIdentity(**values)


def model_from_pb(msg: types_pb2.ModelIdentity) -> IdentifiedModel:
    if len(msg.formats) > MAX_FORMATS:
        raise InvalidInput(f"a model lists more than {MAX_FORMATS} formats")
    values: dict[str, Any] = {
        name: text(getattr(msg, name), f"model {name}", n) for name, n in _TEXT_LIMITS.items()
    }
    values.update({name: counter(getattr(msg, name), f"model {name}") for name in _COUNTERS})
    values.update({name: _digest(getattr(msg, name), name) for name in _DIGESTS})
    values["formats"] = tuple(text(f, "model format", 32) for f in msg.formats)
    return IdentifiedModel(**values, tensors=msg.tensors, valid=msg.valid)


def _digest(value: str, what: str) -> str:
    """A SHA-256 hex digest, or empty."""
    if value and (len(value) != 64 or not set(value) <= _HEX):
        raise InvalidInput(f"{what} {value[:40]!r} is not a SHA-256 hex digest")
    return value
