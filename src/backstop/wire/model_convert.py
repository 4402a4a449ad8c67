"""A workload's identified model between ``backstop.api.v1`` and ``backstop.core.models``.

Held to the same bounds as the rest of a report: identifiers are hex digests, names and
reasons bounded text, counts within the stores' integers.
"""

from __future__ import annotations

import string

from backstop.api.v1 import types_pb2
from backstop.core.errors import InvalidInput
from backstop.core.models import IdentifiedModel
from backstop.wire.checks import counter, text

MAX_FORMATS = 8
_HEX = frozenset(string.hexdigits.lower())


def model_to_pb(model: IdentifiedModel) -> types_pb2.ModelIdentity:
    return types_pb2.ModelIdentity(
        model_id=model.model_id,
        structure_id=model.structure_id,
        architecture=model.architecture,
        name=model.name,
        parameters=model.parameters,
        formats=list(model.formats),
        quantisation=model.quantisation,
        size_class=model.size_class,
        context_length=model.context_length,
        tensors=model.tensors,
        valid=model.valid,
        invalid_reason=model.invalid_reason,
        bytes_read=model.bytes_read,
    )


def model_from_pb(msg: types_pb2.ModelIdentity) -> IdentifiedModel:
    if len(msg.formats) > MAX_FORMATS:
        raise InvalidInput(f"a model lists more than {MAX_FORMATS} formats")
    return IdentifiedModel(
        model_id=_digest(msg.model_id, "model id"),
        structure_id=_digest(msg.structure_id, "structure id"),
        architecture=text(msg.architecture, "model architecture", 128),
        name=text(msg.name, "model name", 512),
        parameters=counter(msg.parameters, "model parameters"),
        formats=tuple(text(f, "model format", 32) for f in msg.formats),
        quantisation=text(msg.quantisation, "model quantisation", 64),
        size_class=text(msg.size_class, "model size class", 16),
        context_length=counter(msg.context_length, "model context length"),
        tensors=msg.tensors,
        valid=msg.valid,
        invalid_reason=text(msg.invalid_reason, "model invalid reason", 1024),
        bytes_read=counter(msg.bytes_read, "model bytes read"),
    )


def _digest(value: str, what: str) -> str:
    """A SHA-256 hex digest, or empty."""
    if value and (len(value) != 64 or not set(value) <= _HEX):
        raise InvalidInput(f"{what} {value[:40]!r} is not a SHA-256 hex digest")
    return value
