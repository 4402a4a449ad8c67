"""Matching policies against workloads: every field, the prefix rules, namespace and node
labels, unattributed use, CEL true, false, failing and not a bool, expiry, and the expression
compiled once per document."""

from __future__ import annotations

import dataclasses
import textwrap

import celpy
import pytest

from backstop.core.models import (
    Behaviour,
    Fingerprint,
    GpuUse,
    IdentifiedModel,
    Workload,
)
from backstop.core.serving import ServingStats
from backstop.policy import (
    CompiledPolicy,
    compile_policy,
    matching_policies,
    parse_policy,
    scope_within,
)
from backstop.policy.cel_view import workload_view

MODEL_ID = "9f2c4e1a7b3d" + "0" * 52
STRUCTURE_ID = "ab12cd34ef56" + "1" * 52


def _workload(**changes: object) -> Workload:
    base = Workload(
        workload_id="wl-1",
        node_id="gpu-1",
        root_pid=10,
        pids=(10, 11),
        fingerprint=Fingerprint(
            exe="/usr/bin/python3",
            cmdline=("python3", "-m", "vllm.entrypoints.openai.api_server"),
            framework="vllm",
            behaviour=Behaviour.SERVING,
            gpus=(GpuUse("GPU-a", 40 << 30), GpuUse("GPU-b", 40 << 30)),
            listening_ports=(8000,),
            model=IdentifiedModel(
                model_id=MODEL_ID,
                structure_id=STRUCTURE_ID,
                architecture="LlamaForCausalLM",
                name="llama-3-70b",
                parameters=70_000_000_000,
                quantisation="bf16",
            ),
        ),
        labels={"backstop.io/namespace": "prod", "team": "search"},
        serving=ServingStats("vllm", 8000, "llama", generated_tokens_per_s=250.0),
    )
    fp = {k: v for k, v in changes.items() if k in Fingerprint.__dataclass_fields__}
    wl = {k: v for k, v in changes.items() if k not in fp}
    return dataclasses.replace(base, fingerprint=dataclasses.replace(base.fingerprint, **fp), **wl)


def _policy(match: str, extra: str = "") -> CompiledPolicy:
    body = textwrap.indent(textwrap.dedent(match), "  ")
    return compile_policy(parse_policy(f"name: p\nmatch:\n{body}\naction: alert\n{extra}".encode()))


@pytest.mark.parametrize(
    ("match", "hit", "miss"),
    [
        (f"model_id: {MODEL_ID}", {}, {"model": None}),
        ("model_id: 9F2C4E1A7B3D", {}, {"model": IdentifiedModel(model_id="9f2c4e1a7b3e")}),
        (f"structure_id: {STRUCTURE_ID[:12]}", {}, {"model": IdentifiedModel()}),
        ("architecture: llamaforcausallm", {}, {"model": IdentifiedModel(architecture="Gpt2")}),
        ("min_parameters: 70000000000", {}, {"model": IdentifiedModel(parameters=69)}),
        ("min_parameters: 0", {}, {"model": None}),
        ("framework: VLLM", {}, {"framework": "sglang"}),
        ("behaviour: serving", {}, {"behaviour": Behaviour.TRAINING}),
        ("namespace: prod", {}, {"labels": {"team": "search"}}),
        ("namespace: kube", {"labels": {"io.kubernetes.pod.namespace": "kube"}}, {}),
        ("node: gpu-1", {}, {"node_id": "gpu-2"}),
        ("labels: {team: search}", {}, {"labels": {"team": "ads"}}),
        ("unattributed: true", {"unattributed": "pid 4 in another namespace"}, {}),
        ("unattributed: false", {}, {"unattributed": "pid 4 in another namespace"}),
        ("expression: workload.gpus == 2", {}, {"gpus": ()}),
    ],
)
def test_each_field(match: str, hit: dict[str, object], miss: dict[str, object]) -> None:
    policy = _policy(match)
    assert policy.matches(_workload(**hit))
    assert policy.reasons(_workload(**hit))
    assert not policy.matches(_workload(**miss))
    assert policy.reasons(_workload(**miss)) == ()


def test_every_field_given_must_match() -> None:
    policy = _policy("framework: vllm\nnode: gpu-1\nlabels: {team: search}\nmin_parameters: 1")
    assert policy.reasons(_workload()) == (
        "node is 'gpu-1'",
        "framework is 'vllm'",
        "label 'team'='search'",
        "70,000,000,000 parameters >= 1",
    )
    assert not policy.matches(_workload(node_id="gpu-2"))


def test_workload_labels_win_over_the_nodes() -> None:
    policy = _policy("labels: {team: search, zone: a}")
    assert not policy.matches(_workload())
    assert policy.matches(_workload(), {"zone": "a"})
    assert policy.matches(_workload(), {"zone": "a", "team": "ads"})
    assert not policy.matches(_workload(labels={"team": "ads"}), {"zone": "a", "team": "search"})


def test_the_backstop_namespace_label_comes_first() -> None:
    both = {"backstop.io/namespace": "prod", "io.kubernetes.pod.namespace": "other"}
    assert _policy("namespace: prod").matches(_workload(labels=both))
    assert not _policy("namespace: other").matches(_workload(labels=both))


def test_a_model_field_does_not_match_a_workload_without_a_model() -> None:
    for match in ("architecture: x", f"structure_id: {STRUCTURE_ID}", "min_parameters: 0"):
        assert not _policy(match).matches(_workload(model=None))


@pytest.mark.parametrize(
    ("expression", "matched", "error"),
    [
        ('workload.labels["team"] == "search"', True, ""),
        ("workload.serving.generated_tokens_per_s > 100.0", True, ""),
        ('workload.model.architecture.startsWith("Llama") && workload.gpus >= 2', True, ""),
        ('"vllm.entrypoints.openai.api_server" in workload.cmdline', True, ""),
        ("workload.gpu_memory_bytes > 64 * 1024 * 1024 * 1024", True, ""),
        ('has(workload.model) && workload.namespace == "prod" && !workload.unattributed', True, ""),
        ('workload.workload_id == "wl-1" && workload.node == "gpu-1"', True, ""),
        ('workload.state == "running" && 8000 in workload.ports', True, ""),
        ('workload.labels["team"] == "ads"', False, ""),
        ('workload.labels["missing"] == "x"', False, "expression failed"),
        ("1 / 0 == 1", False, "expression failed"),
        ("nosuch == 1", False, "expression failed"),
        ("workload.gpus", False, "not a bool"),
        ('"text"', False, "not a bool"),
    ],
)
def test_expression(expression: str, matched: bool, error: str) -> None:
    policy = _policy(f"expression: '{expression}'")
    verdict = policy.verdict(_workload())
    assert verdict.matched is matched
    assert policy.matches(_workload()) is matched
    assert (error in verdict.error) if error else verdict.error == ""
    assert (error in policy.last_error) if error else policy.last_error == ""
    if matched:
        assert verdict.reasons[-1].startswith("expression ")


def test_the_expression_runs_only_after_the_fields_matched() -> None:
    policy = _policy("node: gpu-2\nexpression: '1 / 0 == 1'")
    assert policy.verdict(_workload()).error == ""


def test_model_and_serving_are_absent_when_the_workload_has_none() -> None:
    view = workload_view(_workload(model=None, serving=None), {})
    assert "model" not in view
    assert "serving" not in view
    assert _policy("expression: '!has(workload.model) && !has(workload.serving)'").matches(
        _workload(model=None, serving=None)
    )


def test_an_expired_policy_matches_nothing() -> None:
    policy = _policy("node: gpu-1", 'expires: "2027-01-01T00:00:00Z"')
    until = policy.policy.expires_at_s
    assert until is not None
    assert policy.verdict(_workload(), now_s=until - 1).matched
    assert not policy.verdict(_workload(), now_s=until).matched
    assert policy.expired(until)
    assert not scope_within(policy, _workload(), now_s=until + 1)
    assert scope_within(policy, _workload(), now_s=until - 1)
    past = _policy("node: gpu-1", 'expires: "2020-01-01T00:00:00Z"')
    assert not past.matches(_workload())


def test_scope_within_is_matching() -> None:
    policy = _policy("labels: {team: search}")
    assert scope_within(policy, _workload())
    assert not scope_within(policy, _workload(labels={}))
    assert scope_within(policy, _workload(labels={}), {"team": "search"})


def test_matching_policies_keeps_the_order_and_gives_the_verdicts() -> None:
    policies = [
        _policy("node: gpu-1"),
        _policy("node: gpu-2"),
        _policy("expression: 'workload.gpus == 2'"),
    ]
    found = matching_policies(policies, _workload())
    assert [p for p, _ in found] == [policies[0], policies[2]]
    assert all(v.matched and v.reasons for _, v in found)


def test_the_expression_is_compiled_once_per_document(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"compile": 0, "program": 0}
    compile_, program = celpy.Environment.compile, celpy.Environment.program

    def counted_compile(self: celpy.Environment, text: str) -> object:
        calls["compile"] += 1
        return compile_(self, text)

    def counted_program(self: celpy.Environment, expr: object, functions: object = None) -> object:
        calls["program"] += 1
        return program(self, expr, functions)  # type: ignore[arg-type]

    monkeypatch.setattr(celpy.Environment, "compile", counted_compile)
    monkeypatch.setattr(celpy.Environment, "program", counted_program)
    policy = _policy("expression: 'workload.gpus == 2'")
    workloads = [_workload(workload_id=f"wl-{i}") for i in range(50)]
    assert all(policy.matches(w) for w in workloads)
    assert all(scope_within(policy, w) for w in workloads)
    assert matching_policies([policy] * 3, workloads[0])
    assert calls == {"compile": 1, "program": 1}


@pytest.mark.parametrize(
    ("expression", "keys"),
    [
        ('has(workload.serving) && workload.labels["team"] == "x"', {"serving", "labels"}),
        ('workload.labels.exists(k, k == "a") && workload.gpus in [1, 2]', {"labels", "gpus"}),
        ("1 == 1", set()),
        ('workload["gpus"] > 1', None),
        ("[1].exists(workload, workload > 0)", None),
        ("workload == {}", None),
    ],
)
def test_the_keys_an_expression_reads(expression: str, keys: set[str] | None) -> None:
    program = _policy(f"expression: '{expression}'").policy.match.program
    assert program is not None
    assert program.keys == (frozenset(keys) if keys is not None else None)


def test_answers_are_kept_per_value_of_what_the_expression_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runs = []
    evaluate = celpy.InterpretedRunner.evaluate

    def counted(self: celpy.InterpretedRunner, context: dict[str, object]) -> object:
        runs.append(1)
        return evaluate(self, context)  # type: ignore[arg-type]

    monkeypatch.setattr(celpy.InterpretedRunner, "evaluate", counted)
    policy = _policy("expression: 'workload.gpus == 2 && !has(workload.serving)'")
    alike = [_workload(workload_id=f"wl-{i}", node_id=f"n{i}", serving=None) for i in range(20)]
    assert all(policy.matches(w) for w in alike)
    assert len(runs) == 1
    assert not policy.matches(_workload(serving=None, gpus=(GpuUse("GPU-a", 1),)))
    assert not policy.matches(_workload())
    assert len(runs) == 3
    whole = _policy("expression: 'workload[\"gpus\"] == 2'")
    assert all(whole.matches(w) for w in alike)
    assert len(runs) == 23
