"""What the CLI receives is converted once: the signed bytes stay as sent, beside the
controller's decoded copy, and ``-o json`` is the message's own JSON form."""

from __future__ import annotations

import pytest
from google.protobuf.json_format import MessageToDict

from backstop.api.v1 import types_pb2
from backstop.core.errors import InvalidInput
from backstop.core.models import Action, CorrectionSpec, CorrectionState, Scope, TargetState
from backstop.wire import correction_convert
from backstop.wire.received import NOTHING_RECEIVED, received_correction

SPEC = CorrectionSpec(
    correction_id="cor-1",
    action=Action.PAUSE,
    scope=Scope(node_ids=("node-a",)),
    reason="leak",
    issuer="alice",
    created_at_s=100.0,
    expires_at_s=200.0,
)


def _message(**fields: object) -> types_pb2.Correction:
    return types_pb2.Correction(
        spec=correction_convert.spec_to_pb(SPEC),
        state=types_pb2.CORRECTION_STATE_PROPOSED,
        targets=[types_pb2.TargetResult(node_id="node-a", state=types_pb2.TARGET_STATE_PENDING)],
        approvals_required=2,
        approvers=["bob"],
        **fields,  # type: ignore[arg-type]
    )


def test_the_signed_bytes_are_kept_as_sent_never_re_encoded() -> None:
    # a field the spec does not know, appended: a re-encoding would drop it
    data = correction_convert.spec_bytes(SPEC) + b"\xa8\x06\x01"
    received = received_correction(_message(signed_spec=data))
    assert received.signed_spec == data
    assert received.shown == SPEC
    assert received.state is CorrectionState.PROPOSED
    assert [t.state for t in received.targets] == [TargetState.PENDING]
    assert (received.approvals_required, received.approvers) == (2, ("bob",))


def test_json_is_the_messages_own_in_the_documented_shape() -> None:
    msg = _message(signed_spec=correction_convert.spec_bytes(SPEC))
    msg.targets[0].sequence = 2**40
    msg.audit_head.seq = 7
    expected = MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    assert expected["targets"][0]["sequence"] == str(2**40)  # the protobuf JSON mapping's way
    expected["targets"][0]["sequence"] = 2**40
    expected["audit_head"]["seq"] = 7
    expected["state"] = "proposed"
    expected["targets"][0]["state"] = "pending"
    expected["spec"]["action"] = "pause"
    expected["spec"]["created_at"] = "1970-01-01T00:01:40.000Z"
    expected["spec"]["expires_at"] = "1970-01-01T00:03:20.000Z"
    expected["targets"][0]["updated_at"] = None
    expected |= {
        "apiVersion": "backstop.io/v1",
        "kind": "Correction",
        "updated_at": None,
        "completed_at": None,
    }
    assert received_correction(msg).json_data == expected
    assert NOTHING_RECEIVED.json_data["state"] == "unspecified"
    assert NOTHING_RECEIVED.state is None


def test_a_copy_that_does_not_decode_is_kept_as_why_and_asked_for_is_an_error() -> None:
    msg = _message()
    msg.spec.correction_id = "two words"
    received = received_correction(msg)
    assert received.shown is None
    assert "not a valid identifier" in received.shown_error
    with pytest.raises(InvalidInput, match="is not a valid correction"):
        received.controllers_copy()


def test_a_malformed_state_is_a_clear_error() -> None:
    msg = _message()
    msg.targets[0].state = 99  # type: ignore[assignment]
    with pytest.raises(InvalidInput, match="do not trust this controller"):
        received_correction(msg)
