"""``-o json`` shapes every message the same way, from its descriptor: enum values as
lower-case words, 64-bit integers as numbers, an RFC 3339 twin beside each timestamp in
epoch seconds, and ``apiVersion`` and ``kind`` on the object at the top."""

from __future__ import annotations

import pytest

from backstop.api.v1 import control_pb2, types_pb2
from backstop.wire.json_form import (
    API_VERSION,
    document,
    enum_word,
    message_fields,
    message_json,
    rfc3339,
)
from backstop.wire.received import received_node, received_workload
from backstop.wire.received_fleet import received_model, received_sighting


@pytest.mark.parametrize(
    ("enum", "name", "word"),
    [
        (types_pb2.CorrectionState.DESCRIPTOR, "CORRECTION_STATE_COMPLETED", "completed"),
        (types_pb2.CorrectionState.DESCRIPTOR, "CORRECTION_STATE_UNSPECIFIED", "unspecified"),
        (types_pb2.TargetState.DESCRIPTOR, "TARGET_STATE_UNREACHABLE", "unreachable"),
        (types_pb2.Action.DESCRIPTOR, "ACTION_PAUSE", "pause"),
    ],
)
def test_an_enum_value_is_its_lower_case_word(enum: object, name: str, word: str) -> None:
    assert enum_word(enum, name) == word  # type: ignore[arg-type]


def test_every_enum_of_the_protocol_is_a_word_wherever_it_is() -> None:
    msg = types_pb2.Correction(
        spec=types_pb2.CorrectionSpec(action=types_pb2.ACTION_SHUTDOWN),
        state=types_pb2.CORRECTION_STATE_DISPATCHED,
        targets=[
            types_pb2.TargetResult(state=types_pb2.TARGET_STATE_APPLIED),
            types_pb2.TargetResult(state=types_pb2.TARGET_STATE_REFUSED),
        ],
    )
    data = message_fields(msg)
    assert data["spec"]["action"] == "shutdown"
    assert data["state"] == "dispatched"
    assert [t["state"] for t in data["targets"]] == ["applied", "refused"]


def test_a_value_this_client_does_not_know_stays_its_number() -> None:
    msg = types_pb2.TargetResult()
    msg.state = 42  # type: ignore[assignment]
    assert message_fields(msg)["state"] == 42


def test_each_timestamp_gains_an_rfc3339_twin_and_keeps_its_seconds() -> None:
    msg = types_pb2.Correction(updated_at_s=1796648400.123)
    msg.spec.created_at_s = 1796648400.0
    data = message_fields(msg)
    assert (data["updated_at_s"], data["updated_at"]) == (
        1796648400.123,
        "2026-12-07T13:00:00.123Z",
    )
    assert data["spec"]["created_at"] == "2026-12-07T13:00:00.000Z"
    assert data["spec"]["expires_at"] is None  # 0: never set
    assert "completed_at_s" not in data
    assert data["completed_at"] is None
    msg.completed_at_s = 1796648401.5
    assert message_fields(msg)["completed_at"] == "2026-12-07T13:00:01.500Z"


def test_durations_and_rates_in_seconds_are_not_timestamps() -> None:
    params = message_fields(types_pb2.ActionParams(grace_s=30.0, sample_interval_s=1.0))
    assert set(params) == {"grace_s", "sample_interval_s"}
    serving = message_fields(types_pb2.ServingStats(generated_tokens_per_s=5.0, sampled_at_s=9.0))
    assert "generated_tokens_per" not in serving
    assert serving["sampled_at"] == "1970-01-01T00:00:09.000Z"


@pytest.mark.parametrize("value", [0, 0.0, float("nan"), "NaN", "Infinity", 1e300, -1e300, True])
def test_what_is_not_a_time_has_no_rfc3339_form(value: object) -> None:
    assert rfc3339(value) is None


def test_the_objects_at_the_top_say_their_api_version_and_kind() -> None:
    workload = types_pb2.Workload(workload_id="w1", node_id="n1", started_at_s=1.0)
    node = received_node(types_pb2.Node(node_id="n1", last_seen_s=2.0)).json_data
    assert (node["apiVersion"], node["kind"], node["last_seen"]) == (
        API_VERSION,
        "Node",
        "1970-01-01T00:00:02.000Z",
    )
    listed = received_workload(workload).json_data
    assert (listed["kind"], listed["started_at"]) == ("Workload", "1970-01-01T00:00:01.000Z")
    summary = control_pb2.ModelSummary(model=types_pb2.ModelIdentity(model_id="ab" * 32), copies=2)
    model = received_model(summary).json_data
    assert (model["kind"], model["model_id"], model["copies"]) == ("Model", "ab" * 32, 2)
    assert model["tokens_per_second"] is None
    assert model["first_seen"] is None
    sighting = received_sighting(control_pb2.ModelSighting(workload_id="w1")).json_data
    assert sighting["kind"] == "ModelSighting"
    preview = message_json(control_pb2.PreviewScopeResponse(workload_count=3), "ScopePreview")
    assert preview == {
        "apiVersion": API_VERSION,
        "kind": "ScopePreview",
        "node_ids": [],
        "workload_count": 3,
        "workloads": [],
    }
    assert document("AuditHead", {"seq": 1}) == {
        "apiVersion": API_VERSION,
        "kind": "AuditHead",
        "seq": 1,
    }
