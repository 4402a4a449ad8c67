"""Bad input is refused with a message that says the rule, by the CLI and by the controller
(whose refusals are audited); number flags out of range are usage errors, never tracebacks."""

from __future__ import annotations

import json

import grpc
import pytest

from backstop.api.v1 import control_pb2, control_pb2_grpc, types_pb2
from tests.support.cluster import LocalCluster

MODEL = "0123456789abcdef"


@pytest.fixture
def controller(cluster: LocalCluster) -> LocalCluster:
    cluster.start_controller()
    return cluster


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--model", ""], "expected 12 to 64 hex digits"),
        (["--model", "0123456789a"], "expected 12 to 64 hex digits"),
        (["--model", "sha256:"], "expected 12 to 64 hex digits"),
        (["--selector", "a=b,c"], "'c': expected key=value"),
        (["--selector", "=x"], "'' is not a valid label key (a label key is [PREFIX/]NAME"),
        (["--selector", "Bad.Prefix/app=x"], "not a valid label key (a label key is"),
        (["--selector", "app=-x"], "'-x' is not a valid label value (a label value is"),
        (["--all", "--reason", "   "], "a reason is required"),
        (["--all", "--reason", "ok\x1b[2J"], "control or invisible characters (U+001B)"),
        (["--all", "--reason", "two\nlines"], "control or invisible characters (U+000A)"),
        (["--all", "--reason", "abc\u202edef"], "control or invisible characters (U+202E)"),
    ],
)
def test_the_cli_refuses_bad_scopes_and_reasons(
    controller: LocalCluster, flags: list[str], message: str
) -> None:
    if "--reason" not in flags:
        flags = [*flags, "--reason", "why"]
    result = controller.cli("pause", *flags, "--yes")
    assert result.code == 2, result.out + result.err
    assert message in result.err
    assert "Traceback" not in result.err
    assert "\x1b" not in result.err
    assert controller.json("corrections") == []


@pytest.mark.parametrize(
    ("scope", "reason", "message"),
    [
        (types_pb2.Scope(model_hashes=[""]), "why", "12 to 64 hex digits"),
        (types_pb2.Scope(model_hashes=["abcdef01"]), "why", "12 to 64 hex digits"),
        (
            types_pb2.Scope(
                selector=[types_pb2.LabelRequirement(key="a", value="b,c", equal=True)]
            ),
            "why",
            "'b,c' is not a valid label value (a label value is",
        ),
        (
            types_pb2.Scope(selector=[types_pb2.LabelRequirement(key="", value="x", equal=True)]),
            "why",
            "is not a valid label key",
        ),
        (types_pb2.Scope(all=True), " \t ", "a reason is required"),
        (types_pb2.Scope(all=True), "fine\x1b]0;owned\x07", "control or invisible characters"),
    ],
)
def test_the_controller_refuses_them_too_and_audits_it(
    controller: LocalCluster, scope: types_pb2.Scope, reason: str, message: str
) -> None:
    with grpc.insecure_channel(controller.address) as channel:
        stub = control_pb2_grpc.ControlServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.CreateCorrection(
                control_pb2.CreateCorrectionRequest(
                    action=types_pb2.ACTION_PAUSE, scope=scope, reason=reason, issuer="mallory"
                ),
                timeout=10,
            )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (refused.value.details() or "")
    exported = controller.cli("audit", "export")
    assert exported.code == 0, exported.err
    entries = [json.loads(line) for line in exported.out.splitlines()]
    refusals = [e for e in entries if e["action"] == "correction.refused"]
    assert len(refusals) == 1
    assert message in refusals[0]["details"]["reason"]
    assert controller.json("corrections") == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["corrections", "--limit", "99999999999"], "give a whole number from 1 to 10000"),
        (["corrections", "--limit", "0"], "give a whole number from 1 to 10000"),
        (["audit", "export", "--after", "-1"], "from 0 to 9223372036854775807"),
        (["audit", "export", "--after", str(2**64)], "from 0 to 9223372036854775807"),
        (["pause", "--all", "--reason", "x", "--timeout", "nan"], "seconds within (0, 604800]"),
        (["pause", "--all", "--reason", "x", "--timeout", "1e309"], "seconds within (0, 604800]"),
        (["pause", "--all", "--reason", "x", "--ttl", "-1"], "seconds within [0, 604800]"),
        (["throttle", "--all", "--reason", "x", "--power-fraction", "inf"], "not a finite"),
        (["status", "cor-00000000", "--timeout", "0"], "seconds within (0, 604800]"),
        (["--log-level", "verbose", "nodes"], "choose from debug, info, warning, error"),
    ],
)
def test_number_and_level_flags_out_of_range_are_usage_errors(
    cluster: LocalCluster, args: list[str], message: str
) -> None:
    result = cluster.cli(*args)
    assert result.code == 2, result.out + result.err
    assert message in result.err
    assert "Traceback" not in result.err


def test_pki_days_out_of_range_is_a_usage_error(cluster: LocalCluster) -> None:
    out = cluster.workdir / "cert"
    result = cluster.cli(
        "pki", "issue", "--dir", str(cluster.workdir / "ca"), "--name", "n",
        "--role", "agent", "--out", str(out), "--days", "99999999999",
    )  # fmt: skip
    assert result.code == 2, result.err
    assert "give a whole number from 1 to 36500" in result.err
    assert "Traceback" not in result.err


def test_a_good_twelve_digit_model_prefix_and_label_selector_are_accepted(
    controller: LocalCluster,
) -> None:
    result = controller.cli(
        "observe", "--model", MODEL[:12], "--selector", "backstop.io/framework=vllm",
        "--reason", "look closer",
    )  # fmt: skip
    assert result.code == 0, result.err
    (listed,) = controller.json("corrections")
    assert listed["spec"]["scope"]["model_hashes"] == [MODEL[:12]]
