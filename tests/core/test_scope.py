"""Selector parsing and scope matching."""

from __future__ import annotations

import pytest

from backstop.core.errors import InvalidInput
from backstop.core.models import Fingerprint, Scope, WeightsFile, Workload
from backstop.core.scope import (
    parse_model_hash,
    parse_selector,
    validate_scope,
    workload_in_scope,
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
    assert parse_model_hash("sha256:ABCDEF0123") == "abcdef0123"
    with pytest.raises(InvalidInput, match="hex digits"):
        parse_model_hash("abc")


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
