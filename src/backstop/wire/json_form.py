"""The JSON form of what the controller sends, as ``-o json`` and ``-o yaml`` print it.

One walk over the message's descriptor makes the protocol's own JSON (proto field names,
every field, defaults included) into the documented shape (``docs/json.md``): 64-bit integers
as numbers, enum values as their lower-case words (``CORRECTION_STATE_COMPLETED`` is
``completed``), and beside each timestamp in epoch seconds (``created_at_s``, ``last_seen_s``)
its RFC 3339 twin without the suffix (``created_at``; ``null`` for 0). Each object printed at
the top carries ``apiVersion`` and its ``kind``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from backstop.core import times

API_VERSION = "backstop.io/v1"
TIMESTAMP_SUFFIXES = ("_at_s", "_seen_s")
"""A ``double`` field named so holds epoch seconds (``ttl_s``, ``grace_s`` are durations)."""

_INT64_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)


def document(kind: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """An object as printed at the top of an output: ``apiVersion`` and ``kind``, then
    ``fields``."""
    return {"apiVersion": API_VERSION, "kind": kind, **fields}


def message_json(msg: Message, kind: str) -> dict[str, Any]:
    """A message as ``-o json`` prints it at the top of an output, as a ``kind``."""
    return document(kind, message_fields(msg))


def message_fields(msg: Message) -> dict[str, Any]:
    """A message's fields in the documented JSON shape (without ``apiVersion`` and ``kind``)."""
    data = MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    _shape(msg.DESCRIPTOR, data)
    return data


def enum_word(enum: EnumDescriptor, name: str) -> str:
    """``CORRECTION_STATE_COMPLETED`` of ``CorrectionState``: ``completed``."""
    prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"
    return name.removeprefix(prefix).lower()


def rfc3339(ts: object) -> str | None:
    """Epoch seconds as RFC 3339 in UTC to the millisecond; ``None`` for 0, or for what is
    not a time (not a finite number, or out of range)."""
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts) or not ts:
        return None
    try:
        return times.rfc3339(ts, milliseconds=True)
    except (OverflowError, OSError, ValueError):
        return None


def _shape(descriptor: Any, data: dict[str, Any]) -> None:
    """Shape ``data`` (a message's dict, from MessageToDict) in place."""
    for field in descriptor.fields:
        if field.name in data:
            data[field.name] = _converted(field, data[field.name])
        if field.type == FieldDescriptor.TYPE_DOUBLE and field.name.endswith(TIMESTAMP_SUFFIXES):
            data[field.name.removesuffix("_s")] = rfc3339(data.get(field.name, 0))


def _converted(field: FieldDescriptor, value: Any) -> Any:
    if isinstance(value, list):
        return [_converted_one(field, v) for v in value]
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry and isinstance(value, dict):
        value_field = entry.fields_by_name["value"]
        return {k: _converted_one(value_field, v) for k, v in value.items()}
    return _converted_one(field, value)


def _converted_one(field: FieldDescriptor, value: Any) -> Any:
    if field.type in _INT64_TYPES:
        return int(value)
    if field.enum_type is not None and isinstance(value, str):
        return enum_word(field.enum_type, value)  # a value this client does not know: its number
    if field.message_type is not None and isinstance(value, dict):
        _shape(field.message_type, value)
    return value
