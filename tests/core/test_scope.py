"""Selector parsing and scope matching."""

from __future__ import annotations

import dataclasses

import pytest

from backstop.core.errors import InvalidInput
from backstop.core.models import Fingerprint, IdentifiedModel, Scope, WeightsFile, Workload
from backstop.core.scope import (
    parse_model_hash,
    parse_selector,
    validate_scope,
    workload_in_scope,
    workload_namespace,
)


def _workload(node: str = "n1", labels: dict[str, str] | None = None, model: str = "") -> Workload:
    weights = (WeightsFile("/m.safetensors", "safetensors", 10, "aa" * 32, "bb" * 32),)
    return Workload(
        workload_id="wl-1",
        node_id=node,
        root_pid=10,
        pids=(10,),
        fingerprint=Fingerprint(model_hash=model, weights=weights if model else ()),
        labels=labels or {},
    )


def test_selector_parses_equality_and_inequality() -> None:
    assert parse_selector("app=llm, tier!=canary") == (
        ("app", "llm", True),
        ("tier", "canary", False),
    )
    assert parse_selector("backstop.io/framework==vllm") == (
        ("backstop.io/framework", "vllm", True),
    )


@pytest.mark.parametrize("bad", ["", "app", "app=llm,", "=x", "a b=c", "app=has space", ",app=x"])
def test_malformed_selector_is_refused_with_the_term(bad: str) -> None:
    with pytest.raises(InvalidInput, match="malformed selector"):
        parse_selector(bad)


def test_selector_matches_labels() -> None:
    scope = Scope(selector=parse_selector("app=llm,tier!=canary"))
    assert workload_in_scope(scope, _workload(labels={"app": "llm"}))
    assert not workload_in_scope(scope, _workload(labels={"app": "llm", "tier": "canary"}))
    assert not workload_in_scope(scope, _workload(labels={"app": "web"}))


def test_model_hash_prefix_matches_model_and_weights_hashes() -> None:
    wl = _workload(model="cd" * 32)
    assert workload_in_scope(Scope(model_hashes=("cdcdcdcd",)), wl)
    assert workload_in_scope(Scope(model_hashes=("bbbbbbbb",)), wl)  # a weights file's hash
    assert not workload_in_scope(Scope(model_hashes=("12345678",)), wl)
    assert parse_model_hash("sha256:ABCDEF012345") == "abcdef012345"
    with pytest.raises(InvalidInput, match="hex digits"):
        parse_model_hash("abc")


def test_model_id_prefix_matches_the_identified_model() -> None:
    identified = IdentifiedModel(model_id="e1" * 32, structure_id="f2" * 32, valid=True)
    wl = dataclasses.replace(_workload(), fingerprint=Fingerprint(model=identified))
    assert workload_in_scope(Scope(model_hashes=("e1e1e1e1e1e1",)), wl)
    assert not workload_in_scope(Scope(model_hashes=("f2f2f2f2f2f2",)), wl)  # structure: no


@pytest.mark.parametrize("bad", ["", "   ", "0123456789a", "sha256:", "0123456789abcdeg"])
def test_model_prefix_needs_twelve_hex_digits(bad: str) -> None:
    with pytest.raises(InvalidInput, match="12 to 64 hex digits"):
        parse_model_hash(bad)
    with pytest.raises(InvalidInput, match="12 to 64 hex digits"):
        validate_scope(Scope(model_hashes=(bad,)))  # what the controller checks


@pytest.mark.parametrize(
    ("key", "value", "rule"),
    [
        ("", "x", "label key"),
        ("a b", "x", "label key"),
        ("Example.com/app", "x", "label key"),  # the prefix is lower case
        ("x" * 64, "v", "label key"),  # a name is at most 63
        ("app", "b,c", "label value"),
        ("app", "-x", "label value"),
        ("app", "v" * 64, "label value"),
    ],
)
def test_selector_terms_follow_label_syntax_with_the_rule(key: str, value: str, rule: str) -> None:
    with pytest.raises(InvalidInput, match=rf"not a valid {rule} \(a {rule} is"):
        validate_scope(Scope(selector=((key, value, True),)))
    if "," in value:  # on the command line the comma splits terms: "c" is no term
        with pytest.raises(InvalidInput, match="'c': expected key=value"):
            parse_selector(f"{key}={value}")
        return
    with pytest.raises(InvalidInput, match=rf"malformed selector term .*{rule} \(a {rule} is"):
        parse_selector(f"{key}={value}")


def test_selector_keys_with_a_dns_prefix_are_labels() -> None:
    validate_scope(Scope(selector=(("backstop.io/framework", "vllm", True), ("a", "", False))))
    assert parse_selector("app.kubernetes.io/name=llm") == (
        ("app.kubernetes.io/name", "llm", True),
    )


def test_node_scope_and_all() -> None:
    assert workload_in_scope(Scope(all=True), _workload())
    assert workload_in_scope(Scope(node_ids=("n1",)), _workload("n1"))
    assert not workload_in_scope(Scope(node_ids=("n2",)), _workload("n1"))
    assert not workload_in_scope(Scope(), _workload())


def test_validate_scope_refuses_empty_and_all_with_others() -> None:
    with pytest.raises(InvalidInput, match="empty scope"):
        validate_scope(Scope())
    with pytest.raises(InvalidInput, match="--all cannot be combined"):
        validate_scope(Scope(all=True, node_ids=("n1",)))


def test_the_namespace_is_the_operators_label_else_the_runtimes() -> None:
    both = {"backstop.io/namespace": "prod", "io.kubernetes.pod.namespace": "kube"}
    assert workload_namespace(_workload(labels=both)) == "prod"
    assert workload_namespace(_workload(labels={"io.kubernetes.pod.namespace": "kube"})) == "kube"
    assert workload_namespace(_workload()) is None
