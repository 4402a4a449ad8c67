"""What a client receives from the controller, converted once where it arrives: corrections,
nodes and workloads as records, each with the message as ``-o json`` prints it.

A received correction keeps the exact signed spec bytes the controller sent (never a
re-encoding: what a person approves is decoded from those bytes), the controller's own decoded
copy beside them (only to say loudly when the two differ; a copy that does not decode is kept
as the reason why), the signatures and quorum state, and the targets' progress. The JSON form
is made here from the message itself (:mod:`backstop.wire.json_form`), so ``-o json`` stays
the protocol's own rendering.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from backstop.api.v1 import types_pb2
from backstop.core.errors import BackstopError, InvalidInput
from backstop.core.models import (
    CorrectionSpec,
    CorrectionState,
    NodeInfo,
    SignatureRecord,
    TargetResult,
    Workload,
)
from backstop.wire import convert, correction_convert
from backstop.wire.json_form import message_json

JsonObject = Mapping[str, Any]


class Received(Protocol):
    """What every received record has: its message as ``-o json`` prints it."""

    @property
    def json_data(self) -> JsonObject: ...


@dataclass(frozen=True, slots=True)
class ReceivedCorrection:
    """A correction as the controller sent it."""

    correction_id: str
    """As the controller's copy names it: the id to ask the controller about."""
    signed_spec: bytes
    """The exact bytes the signatures cover, as received (empty: the controller sent none)."""
    shown: CorrectionSpec | None
    """The controller's decoded copy; None when it is not a valid spec (``shown_error``)."""
    shown_error: str
    state: CorrectionState | None
    """None: the controller named no state."""
    targets: tuple[TargetResult, ...]
    message: str
    signatures: tuple[SignatureRecord, ...]
    approvals_required: int
    approvers: tuple[str, ...]
    json_data: JsonObject

    def controllers_copy(self) -> CorrectionSpec:
        """The controller's decoded copy; InvalidInput saying why when it does not decode."""
        if self.shown is None:
            raise InvalidInput(
                f"the controller's copy of correction {self.correction_id[:40]!r} is not a "
                f"valid correction ({self.shown_error}); do not trust this controller"
            )
        return self.shown


def received_correction(msg: types_pb2.Correction) -> ReceivedCorrection:
    """Convert a received correction; InvalidInput when its state, targets or signatures are
    malformed (its decoded copy may be: that is kept as ``shown_error``)."""
    shown: CorrectionSpec | None = None
    shown_error = ""
    try:
        shown = correction_convert.spec_from_pb(msg.spec)
    except BackstopError as exc:
        shown_error = exc.message
    try:
        state = correction_convert.correction_state_from_pb(msg.state) if msg.state else None
        targets = tuple(correction_convert.target_from_pb(t) for t in msg.targets)
        signatures = correction_convert.signatures_from_pb(msg.signatures)
    except BackstopError as exc:
        raise InvalidInput(
            f"the controller sent an invalid correction {msg.spec.correction_id[:40]!r} "
            f"({exc.message}); do not trust this controller"
        ) from exc
    return ReceivedCorrection(
        correction_id=msg.spec.correction_id,
        signed_spec=bytes(msg.signed_spec),
        shown=shown,
        shown_error=shown_error,
        state=state,
        targets=targets,
        message=msg.message,
        signatures=signatures,
        approvals_required=msg.approvals_required,
        approvers=tuple(msg.approvers),
        json_data=message_json(msg, "Correction"),
    )


NOTHING_RECEIVED = received_correction(types_pb2.Correction())
"""What stands for a correction of which nothing has arrived yet (its JSON: the defaults)."""


@dataclass(frozen=True, slots=True)
class ReceivedNode:
    """A node as the controller lists it: its description and its connection."""

    node: NodeInfo
    connected: bool
    last_seen_s: float
    workload_count: int
    replica: str
    """The controller replica holding the node's stream ("" when offline)."""
    unattributed_count: int
    """Of ``workload_count``: GPU use the agent cannot attribute to a process."""
    json_data: JsonObject


def received_node(msg: types_pb2.Node) -> ReceivedNode:
    return ReceivedNode(
        node=convert.node_from_pb(msg),
        connected=msg.connected,
        last_seen_s=msg.last_seen_s,
        workload_count=msg.workload_count,
        replica=msg.replica,
        unattributed_count=msg.unattributed_count,
        json_data=message_json(msg, "Node"),
    )


@dataclass(frozen=True, slots=True)
class ReceivedWorkload:
    """A workload as the controller lists it."""

    workload: Workload
    json_data: JsonObject


def received_workload(msg: types_pb2.Workload) -> ReceivedWorkload:
    data = message_json(msg, "Workload")
    fingerprint = data.get("fingerprint")
    if isinstance(fingerprint, dict):
        fingerprint.update(model_keys(data["fingerprint"].get("model")))
    return ReceivedWorkload(convert.workload_from_pb(msg), data)


def model_keys(model: object) -> dict[str, Any]:
    """The identified model's keys scripts rely on, lifted where they read them (the JSON
    contract: ``model_id``, ``parameters`` as an integer, ``architecture``); empty values
    when there is no model."""
    found = model if isinstance(model, dict) else {}
    return {
        "model_id": found.get("model_id", ""),
        "parameters": found.get("parameters", 0),
        "architecture": found.get("architecture", ""),
    }
