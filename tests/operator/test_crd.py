"""Parsing Corrections as the API server returns them, and refusing what cannot be acted on."""

from __future__ import annotations

from typing import Any

import pytest

from backstop.core.errors import InvalidInput
from backstop.core.models import Action
from backstop.operator.crd import (
    Phase,
    Requirement,
    TargetRecord,
    TargetState,
    parse_correction,
    parse_selector,
)


def correction(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "backstop.io/v1",
        "kind": "Correction",
        "metadata": {
            "name": "pause-llm",
            "uid": "u-1",
            "generation": 2,
            "resourceVersion": "99",
            "finalizers": ["backstop.io/revert"],
        },
        "spec": spec,
        "status": status or {},
    }


def test_a_full_correction_parses_into_its_typed_form() -> None:
    c = parse_correction(
        correction(
            {
                "action": "shutdown",
                "reason": "leak",
                "scope": {
                    "namespaces": ["serving"],
                    "nodes": ["gpu-0"],
                    "gpuWorkloadsOnly": False,
                    "workloads": ["serving/Deployment/llm"],
                    "selector": {"matchLabels": {"app": "llm"}},
                },
            },
            {
                "phase": "Applied",
                "observedGeneration": 2,
                "message": "1 Deployment scaled to 0",
                "targets": [
                    {
                        "kind": "Deployment",
                        "namespace": "serving",
                        "name": "llm",
                        "state": "Scaled",
                        "previousReplicas": 3,
                    },
                    {"kind": "Thing", "name": "x", "state": "SomethingElse"},
                ],
            },
        )
    )

    assert c.action is Action.SHUTDOWN
    assert (c.name, c.uid, c.generation, c.resource_version) == ("pause-llm", "u-1", 2, "99")
    assert c.scope.namespaces == ("serving",)
    assert c.scope.nodes == ("gpu-0",)
    assert c.scope.gpu_workloads_only is False
    assert c.scope.selector is not None
    assert c.scope.selector.requirements == (Requirement("app", "In", ("llm",)),)
    assert c.phase is Phase.APPLIED
    assert c.settled
    assert c.targets == (
        TargetRecord("Deployment", "serving", "llm", TargetState.SCALED, 3),
    )  # an entry the operator did not write is ignored
    assert c.finalizers == ("backstop.io/revert",)


def test_a_status_for_an_older_spec_is_not_settled() -> None:
    c = parse_correction(
        correction(
            {"action": "pause", "reason": "x", "scope": {"all": True}},
            {"phase": "Applied", "observedGeneration": 1},
        )
    )
    assert c.phase is Phase.APPLIED
    assert not c.settled


def test_a_new_correction_is_pending_and_gpu_only_by_default() -> None:
    c = parse_correction(correction({"action": "pause", "reason": "x", "scope": {"all": True}}))
    assert c.phase is Phase.PENDING
    assert c.scope.gpu_workloads_only is True
    assert c.scope.names_something


def test_target_records_round_trip_through_the_status() -> None:
    record = TargetRecord("Node", "", "gpu-0", TargetState.CORDONED, None, "was cordoned before")
    assert record.to_json() == {
        "kind": "Node",
        "namespace": "",
        "name": "gpu-0",
        "state": "Cordoned",
        "message": "was cordoned before",
    }
    assert TargetRecord.from_json(record.to_json()) == record


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("app=llm", "spec.scope.selector must be a label selector object"),
        ({"matchLabel": {"a": "b"}}, "unknown field(s) matchLabel"),
        ({"matchLabels": {"a": 1}}, "spec.scope.selector.matchLabels['a'] must be a string"),
        (
            {"matchExpressions": [{"key": "a", "operator": "In"}]},
            "matchExpressions[0]: In needs at least one value",
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
            "matchExpressions[0]: Exists takes no values",
        ),
        ({"matchExpressions": [{"operator": "Exists"}]}, "matchExpressions[0] needs a key"),
    ],
)
def test_a_malformed_selector_is_refused_with_what_is_wrong(selector: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=None) as refused:
        parse_selector(selector)
    assert message in refused.value.message


def test_selector_requirements_follow_kubernetes_semantics() -> None:
    labels = {"app": "llm", "tier": "serving"}
    assert Requirement("app", "In", ("llm", "tgi")).matches(labels)
    assert not Requirement("app", "NotIn", ("llm",)).matches(labels)
    assert Requirement("zone", "NotIn", ("eu",)).matches(labels)
    assert Requirement("tier", "Exists").matches(labels)
    assert Requirement("zone", "DoesNotExist").matches(labels)
    assert not Requirement("zone", "In", ("eu",)).matches(labels)
