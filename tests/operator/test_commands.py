"""Controller commands as Corrections: scopes mapped, and what selects nothing here said so."""

from __future__ import annotations

import pytest

from backstop.core.models import Action, CorrectionSpec, Scope
from backstop.operator.commands import MakeCorrection, NothingHere, correction_name, plan

NODE = "k8s-prod"


def spec(action: Action, scope: Scope, reverts: str = "") -> CorrectionSpec:
    return CorrectionSpec(
        correction_id="cor-0190aa55bb0012345678",
        action=action,
        scope=scope,
        reason="unsafe model",
        issuer="alice",
        created_at_s=1_700_000_000.0,
        expires_at_s=1_700_003_600.0,
        reverts=reverts,
    )


def made(decision: NothingHere | MakeCorrection) -> MakeCorrection:
    assert isinstance(decision, MakeCorrection), decision
    return decision


def test_shutdown_all_becomes_a_cluster_wide_correction_named_after_the_id() -> None:
    decision = made(plan(spec(Action.SHUTDOWN, Scope(all=True)), NODE))

    assert decision.name == "ctl-cor-0190aa55bb0012345678"
    manifest = decision.manifest
    assert manifest["apiVersion"] == "backstop.io/v1"
    assert manifest["metadata"]["labels"] == {"backstop.io/source": "controller"}
    assert manifest["metadata"]["annotations"] == {
        "backstop.io/issuer": "alice",
        "backstop.io/expires-at": "2023-11-14T23:13:20Z",
    }
    assert manifest["spec"] == {
        "action": "shutdown",
        "reason": "unsafe model",
        "controllerCorrectionId": "cor-0190aa55bb0012345678",
        "scope": {"all": True, "gpuWorkloadsOnly": True},
    }


def test_a_selector_becomes_match_expressions() -> None:
    scope = Scope(selector=(("backstop.io/framework", "vllm", True), ("tier", "batch", False)))
    decision = made(plan(spec(Action.PAUSE, scope), NODE))
    assert decision.manifest["spec"]["scope"] == {
        "gpuWorkloadsOnly": True,
        "selector": {
            "matchExpressions": [
                {"key": "backstop.io/framework", "operator": "In", "values": ["vllm"]},
                {"key": "tier", "operator": "NotIn", "values": ["batch"]},
            ]
        },
    }


def test_this_clusters_node_id_alone_means_everything_here() -> None:
    decision = made(plan(spec(Action.PAUSE, Scope(node_ids=(NODE, "gpu-host-3"))), NODE))
    assert decision.manifest["spec"]["scope"] == {"all": True, "gpuWorkloadsOnly": True}


def test_only_this_clusters_workload_ids_are_kept() -> None:
    scope = Scope(workload_ids=("serving/Deployment/llm", "wl-0a1b2c3d4e5f"))
    decision = made(plan(spec(Action.TERMINATE, scope), NODE))
    assert decision.manifest["spec"]["scope"] == {
        "gpuWorkloadsOnly": True,
        "workloads": ["serving/Deployment/llm"],
    }


@pytest.mark.parametrize(
    ("action", "scope", "message"),
    [
        (Action.PAUSE, Scope(node_ids=("gpu-host-3",)), "k8s-prod is not among the correction's"),
        (Action.PAUSE, Scope(model_hashes=("0123456789ab",)), "carry no model hash"),
        (Action.PAUSE, Scope(workload_ids=("wl-0a1b2c3d4e5f",)), "none of the workload ids"),
        (Action.OBSERVE, Scope(all=True), "observe raises node agents' sampling"),
        (Action.THROTTLE, Scope(all=True), "throttle caps GPUs through node agents"),
    ],
)
def test_what_selects_nothing_here_is_said_so(action: Action, scope: Scope, message: str) -> None:
    decision = plan(spec(action, scope), NODE)
    assert isinstance(decision, NothingHere)
    assert message in decision.message


def test_a_resume_names_the_correction_it_undoes() -> None:
    decision = made(
        plan(spec(Action.RESUME, Scope(all=True), reverts="cor-0190aa55bb00aaaaaaaa"), NODE)
    )
    assert decision.manifest["spec"]["action"] == "resume"
    assert decision.manifest["spec"]["resumes"] == correction_name("cor-0190aa55bb00aaaaaaaa")
    assert "scope" not in decision.manifest["spec"]
