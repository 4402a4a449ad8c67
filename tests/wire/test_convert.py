"""Round trips between domain models and protobuf, and validation of what comes off the wire."""

from __future__ import annotations

import pytest

from backstop.api.v1 import agent_pb2, types_pb2
from backstop.core.errors import InvalidInput
from backstop.core.models import (
    Action,
    ActionParams,
    Behaviour,
    CommandAck,
    CorrectionSpec,
    Fingerprint,
    GpuSample,
    GpuUse,
    Report,
    Scope,
    TargetState,
    WeightsFile,
    Workload,
    WorkloadOutcome,
)
from backstop.wire import convert, correction_convert


def _workload() -> Workload:
    return Workload(
        workload_id="wl-abc",
        node_id="n1",
        root_pid=42,
        pids=(42, 43),
        fingerprint=Fingerprint(
            exe="/usr/bin/python3",
            cmdline=("python3", "serve.py", "--api-key", "***"),
            cgroup="/system.slice/llm.service",
            framework="vllm",
            weights=(
                WeightsFile("/m/model.safetensors", "safetensors", 1 << 30, "a" * 64, "b" * 64),
            ),
            listening_ports=(8000,),
            gpus=(GpuUse("GPU-1", 1 << 33),),
            behaviour=Behaviour.SERVING,
            behaviour_confidence=0.9,
            model_hash="c" * 64,
        ),
        labels={"backstop.io/framework": "vllm"},
        state="paused",
        started_at_s=1.5,
    )


def test_report_round_trip_keeps_every_field() -> None:
    gpu = GpuSample(0, "GPU-1", "H100", utilization_pct=0, power_mw=300_000, power_limit_mw=700_000)
    report = Report("n1", 7, 123.0, gpus=(gpu,), workloads=(_workload(),), dropped_reports=3)
    back = convert.report_from_pb(convert.report_to_pb(report), "n1")
    assert back == report
    # zero is a value, not "absent"; absent stays None
    assert back.gpus[0].utilization_pct == 0
    assert back.gpus[0].temperature_c is None


def test_ingest_keeps_gpu_samples_as_the_bytes_that_arrived() -> None:
    gpus = (
        GpuSample(0, "GPU-1", "H100", utilization_pct=0, memory_used_bytes=1 << 40),
        GpuSample(1, "GPU-2", "H100", power_mw=300_000),
    )
    msg = convert.report_to_pb(Report("n1", 7, 123.0, gpus=gpus, workloads=(_workload(),)))
    ingested = convert.report_from_pb(msg, "n1", decode_gpus=False)
    assert ingested.gpus == ()
    assert [uuid for uuid, _ in ingested.encoded_gpus] == ["GPU-1", "GPU-2"]
    for (_, data), gpu in zip(ingested.encoded_gpus, gpus, strict=True):
        sample = types_pb2.GpuSample()
        sample.ParseFromString(data)
        assert convert.gpu_from_pb(sample) == gpu
    # stores get the same bytes from a decoded report
    assert convert.encoded_gpus(convert.report_from_pb(msg, "n1")) == ingested.encoded_gpus


def test_ingest_checks_gpu_samples_as_decoding_does() -> None:
    twice = convert.report_to_pb(
        Report("n1", 1, 1.0, gpus=(GpuSample(0, "GPU-1", "a"), GpuSample(1, "GPU-1", "b")))
    )
    long_uuid = convert.report_to_pb(Report("n1", 1, 1.0, gpus=(GpuSample(0, "G" * 500, "a"),)))
    long_name = convert.report_to_pb(Report("n1", 1, 1.0, gpus=(GpuSample(0, "GPU-1", "n" * 300),)))
    for msg, problem in ((twice, "appears twice"), (long_uuid, "uuid"), (long_name, "name")):
        for decode in (True, False):
            with pytest.raises(InvalidInput, match=problem):
                convert.report_from_pb(msg, "n1", decode_gpus=decode)


def test_report_node_id_comes_from_the_stream_not_the_message() -> None:
    msg = convert.report_to_pb(Report("n1", 1, 1.0, workloads=(_workload(),)))
    msg.workloads[0].node_id = "someone-else"
    assert convert.report_from_pb(msg, "n1").workloads[0].node_id == "n1"


def test_spec_bytes_are_deterministic_and_round_trip() -> None:
    spec = CorrectionSpec(
        correction_id="cor-1",
        action=Action.THROTTLE,
        scope=Scope(selector=(("app", "llm", True),), node_ids=("n1",)),
        reason="why",
        issuer="alice",
        created_at_s=1.0,
        expires_at_s=2.0,
        params=ActionParams(power_fraction=0.5),
    )
    assert correction_convert.spec_bytes(spec) == correction_convert.spec_bytes(spec)
    assert correction_convert.spec_from_bytes(correction_convert.spec_bytes(spec)) == spec


def test_garbage_spec_bytes_are_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="not a valid CorrectionSpec"):
        correction_convert.spec_from_bytes(b"\xff\xff\xff\xff")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda m: setattr(m, "action", 99), "unknown action"),
        (lambda m: setattr(m, "correction_id", ""), "correction id is missing"),
        (lambda m: setattr(m, "correction_id", "has space"), "not a valid identifier"),
        (lambda m: setattr(m.params, "power_fraction", 1.5), "power fraction"),
        (lambda m: setattr(m.params, "grace_s", -1), "grace period"),
        (lambda m: setattr(m, "reason", "x" * 5000), "longer than"),
    ],
)
def test_invalid_specs_are_refused(mutate: object, message: str) -> None:
    msg = types_pb2.CorrectionSpec(correction_id="cor-1", action=types_pb2.ACTION_PAUSE)
    mutate(msg)  # type: ignore[operator]
    with pytest.raises(InvalidInput, match=message):
        correction_convert.spec_from_pb(msg)


def test_ack_round_trip_and_state_check() -> None:
    ack = CommandAck(
        "cor-1",
        3,
        TargetState.APPLIED,
        "ok",
        (WorkloadOutcome("wl-1", (1, 2), "applied", "sigstop"),),
    )
    assert correction_convert.ack_from_pb(correction_convert.ack_to_pb(ack)) == ack
    bad = agent_pb2.CommandAck(correction_id="cor-1", state=types_pb2.TARGET_STATE_DISPATCHED)
    with pytest.raises(InvalidInput, match="cannot report state"):
        correction_convert.ack_from_pb(bad)


def test_behaviour_confidence_out_of_range_is_refused() -> None:
    msg = convert.workload_to_pb(_workload())
    msg.fingerprint.behaviour_confidence = 3.0
    with pytest.raises(InvalidInput, match="behaviour_confidence"):
        convert.workload_from_pb(msg)
