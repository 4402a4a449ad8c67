"""Parsing policy files: the documented example, every refusal with its line and reason, and
the digest over the exact bytes."""

from __future__ import annotations

import hashlib
import textwrap

import pytest

from backstop.core.errors import InvalidInput
from backstop.core.models import Action, ActionParams, Behaviour
from backstop.policy import (
    Enforce,
    PolicyAction,
    PolicyError,
    Severity,
    parse_policy,
)

EXAMPLE = b"""\
name: block-known-model
description: weights reported in incident 4411
match:                    # every given field must match the workload
  model_id: "9f2c4e1a7b3d"
action: pause             # alert | observe | throttle | pause | terminate | shutdown
params: {}
severity: critical
enforce: controller
max_targets_per_hour: 10
incident: ""
expires: "2027-01-01T00:00:00Z"
"""


def _doc(text: str) -> bytes:
    return textwrap.dedent(text).encode()


def test_the_documented_example_parses() -> None:
    doc = parse_policy(EXAMPLE, "block.yaml")
    p = doc.policy
    assert doc.raw == EXAMPLE
    assert doc.digest == hashlib.sha256(EXAMPLE).hexdigest()
    assert p.name == "block-known-model"
    assert p.description == "weights reported in incident 4411"
    assert p.match.model_id == "9f2c4e1a7b3d"
    assert p.action is PolicyAction.PAUSE
    assert p.action.correction is Action.PAUSE
    assert p.corrects
    assert p.params == ActionParams()
    assert p.severity is Severity.CRITICAL
    assert p.enforce is Enforce.CONTROLLER
    assert p.max_targets_per_hour == 10
    assert p.incident == ""
    assert p.expires_at_s == 1798761600.0


def test_defaults_and_every_match_field() -> None:
    doc = parse_policy(
        _doc("""\
            name: all-fields
            match:
              model_id: SHA256:ABCDEF0123456789
              structure_id: 0123456789ab
              architecture: LlamaForCausalLM
              min_parameters: 7_000_000_000
              framework: vLLM
              behaviour: serving
              namespace: prod
              node: gpu-1
              labels: {team: a, tier: "1"}
              unattributed: false
              expression: workload.gpus > 1
            action: alert
            """)
    )
    p = doc.policy
    m = p.match
    assert (m.model_id, m.structure_id) == ("abcdef0123456789", "0123456789ab")
    assert (m.architecture, m.framework) == ("llamaforcausallm", "vllm")
    assert m.min_parameters == 7_000_000_000
    assert m.behaviour is Behaviour.SERVING
    assert (m.namespace, m.node, dict(m.labels)) == ("prod", "gpu-1", {"team": "a", "tier": "1"})
    assert m.unattributed is False
    assert m.expression == "workload.gpus > 1"
    assert m.program is not None
    assert not p.corrects
    assert p.action.correction is None
    assert (p.severity, p.enforce, p.max_targets_per_hour) == (
        Severity.WARNING,
        Enforce.CONTROLLER,
        10,
    )
    assert p.expires_at_s is None


@pytest.mark.parametrize(
    ("action", "params", "expected"),
    [
        ("throttle", "{power_fraction: 0.25, cpu_fraction: 2}", ActionParams(0.25, 2.0)),
        ("terminate", "{grace_s: 0}", ActionParams(grace_s=0.0)),
        ("shutdown", "{grace_s: 30}", ActionParams(grace_s=30.0)),
        ("observe", "{sample_interval_s: 0.5}", ActionParams(sample_interval_s=0.5)),
        ("pause", "", ActionParams()),
    ],
)
def test_params_per_action(action: str, params: str, expected: ActionParams) -> None:
    raw = _doc(f"name: p\nmatch: {{node: n}}\naction: {action}\nparams: {params}\n")
    assert parse_policy(raw).policy.params == expected


def test_the_digest_is_over_the_bytes_as_written() -> None:
    again = parse_policy(EXAMPLE)
    assert again.digest == parse_policy(EXAMPLE).digest
    commented = EXAMPLE.replace(b"# every given", b"# each given")
    other = parse_policy(commented)
    assert other.policy == again.policy
    assert other.digest != again.digest
    assert other.raw == commented


def test_an_unquoted_timestamp_and_an_offset_are_read_as_written() -> None:
    raw = _doc("name: t\nmatch: {node: n}\naction: alert\nexpires: 2027-01-01T01:00:00+01:00\n")
    assert parse_policy(raw).policy.expires_at_s == 1798761600.0


REFUSALS = [
    # (file, line, reason substring)
    ("nmae: x\n", 1, "unknown field 'nmae' in the policy; did you mean 'name'?"),
    ("name: x\nmatch:\n  modle_id: abc\naction: pause\n", 3, "did you mean 'model_id'?"),
    (
        "name: x\nmatch:\n  colour: red\naction: pause\n",
        3,
        "unknown field 'colour' in match (valid:",
    ),
    ("name: x\naction: pause\n", 1, "missing required field 'match'"),
    ("name: x\nmatch: {}\naction: pause\n", 2, "match is empty"),
    ("name: x\nmatch: {labels: {}}\naction: pause\n", 2, "match is empty"),
    ("name: x\nmatch: [1]\naction: pause\n", 2, "match must be a mapping, got a list"),
    ("name: x\nmatch:\n  node: n\naction: pause\nseverity: 3\n", 5, "severity must be one of"),
    ("name: [x]\nmatch: {node: n}\naction: pause\n", 1, "name must be a string, got a list"),
    ("name: Bad_Name\nmatch: {node: n}\naction: pause\n", 1, "name 'Bad_Name' must be 1-63"),
    ("name: x\nmatch:\n  model_id: abc123\naction: pause\n", 3, "is 6 hex characters: give 12"),
    ("name: x\nmatch:\n  structure_id: xyz0123456789\naction: pause\n", 3, "is not hex"),
    ("name: x\nmatch:\n  min_parameters: lots\naction: pause\n", 3, "must be an integer"),
    ("name: x\nmatch:\n  unattributed: 1\naction: pause\n", 3, "must be true or false"),
    ("name: x\nmatch:\n  behaviour: dancing\naction: pause\n", 3, "behaviour 'dancing' is not"),
    ("name: x\nmatch:\n  labels: {'bad key!': a}\naction: pause\n", 3, "not a valid label key"),
    ("name: x\nmatch:\n  labels:\n    team: 'a b'\naction: pause\n", 4, "not a valid label value"),
    (
        "name: x\nmatch:\n  expression: 'workload.gpus >'\naction: pause\n",
        3,
        "expression is not valid CEL: syntax error at column",
    ),
    (
        "name: x\nmatch:\n  expression: |\n    workload.gpus > 1 &&\n    )\naction: pause\n",
        5,
        "expression is not valid CEL",
    ),
    ("name: x\nmatch: {node: n}\naction: explode\n", 3, "action 'explode' is not one of alert,"),
    ("name: x\nmatch: {node: n}\naction: pause\nparams: {grace_s: 5}\n", 4, "'grace_s' does not"),
    (
        "name: x\nmatch: {node: n}\naction: throttle\nparams:\n  power_fraction: 1.5\n",
        5,
        "power fraction must be within (0, 1]",
    ),
    (
        "name: x\nmatch: {node: n}\naction: terminate\nparams:\n  grace_s: -1\n",
        5,
        "grace period must be within [0, 3600]",
    ),
    ("name: x\nmatch: {node: n}\naction: pause\nparams: {grace: 5}\n", 4, "did you mean 'grace_s'"),
    (
        "name: x\nmatch: {node: n}\naction: throttle\nparams: {power_fraction: x}\n",
        4,
        "power_fraction must be a number, got a string",
    ),
    ("name: x\nmatch: {node: n}\naction: pause\nseverity: loud\n", 4, "severity 'loud' is not"),
    ("name: x\nmatch: {node: n}\naction: pause\nenforce: everywhere\n", 4, "enforce 'everywhere'"),
    ("name: x\nmatch: {node: n}\naction: pause\nmax_targets_per_hour: 0\n", 4, "within [1, 10000]"),
    ("name: x\nmatch: {node: n}\naction: pause\nexpires: soon\n", 4, "not an RFC 3339 time"),
    ("name: x\nmatch: {node: n}\naction: pause\nexpires: '2027-01-01T00:00:00'\n", 4, "RFC 3339"),
    ("name: x\nmatch: {node: n}\naction: pause\nincident: [1]\n", 4, "incident must be a string"),
    ("- name: x\n", 1, "the policy must be a mapping, got a list"),
    ("just text\n", 1, "the policy must be a mapping, got a string"),
    ("", 1, "the file is empty"),
    (
        "name: x\nmatch: {node: n}\nname: y\n",
        3,
        "duplicate key 'name' in the policy (first on line 1)",
    ),
    ("name: x\nmatch:\n  node: a\n  node: b\n", 4, "duplicate key 'node' in match"),
    ("name: x\n---\nname: y\n", 3, "more than one YAML document"),
    ("name: x\nmatch: {node: [\n", 3, "not valid YAML"),
    ("name: !!python/object:os.system x\n", 1, "name must be a string, got a value tagged"),
    ("name: x\nmatch: {node: n}\naction: pause\n1: one\n", 4, "a key in the policy must be"),
    ('name: x\ndescription: "a\\e[2Jb"\n', 2, "description holds control"),
    ("name: " + "[" * 30000, 1, "nested too deeply"),
    (
        "name: x\nmatch:\n  expression: '" + "(" * 30 + "true" + ")" * 30 + "'\n",
        3,
        "expression is not valid CEL: nested too deeply (310 levels, at most 250)",
    ),
    ("name: x\nmatch: {node: n}\naction: pause\n<<: {a: b}\n", 4, "a key in the policy must be"),
]


@pytest.mark.parametrize(("text", "line", "reason"), REFUSALS)
def test_refusals_name_the_line_and_the_reason(text: str, line: int, reason: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text.encode(), "p.yaml")
    err = caught.value
    assert isinstance(err, InvalidInput)
    assert (err.source, err.line) == ("p.yaml", line), err.message
    assert reason in err.reason, err.message
    assert err.message == f"p.yaml:{line}: {err.reason}"


def test_a_file_over_64_kib_is_refused_before_parsing() -> None:
    raw = b"name: x\n" + b"# padding\n" * 7000
    with pytest.raises(PolicyError, match=r"over 64 KiB") as caught:
        parse_policy(raw, "big.yaml")
    assert caught.value.line > 1


def test_a_file_that_is_not_utf8_is_refused_with_its_line() -> None:
    with pytest.raises(PolicyError, match=r"^p.yaml:2: the file is not UTF-8"):
        parse_policy(b"name: x\ndescription: \xff\n", "p.yaml")


@pytest.mark.parametrize(
    "text",
    [
        "nam\x1b[31me: x\n",
        'name: x\nmatch:\n  model_id: "\\e[2Jdeadbeef"\naction: pause\n',
        'name: x\nmatch: {node: n}\naction: "\\e]0;owned\\a"\n',
        "name: x\nmatch:\n  expression: '\u202e1 +'\naction: pause\n",
    ],
)
def test_text_from_the_file_is_escaped_in_messages(text: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text.encode(), "p.yaml")
    assert all(c.isprintable() for c in caught.value.message), caught.value.message


def test_an_alias_is_no_way_around_the_types() -> None:
    raw = _doc("""\
        name: &n x
        match: {node: *n, labels: &l {a: b}}
        action: alert
        description: *l
        """)
    with pytest.raises(PolicyError, match=r"^<policy>:2: description must be a string"):
        parse_policy(raw)
