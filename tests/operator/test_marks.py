"""The patches that hold, release, fence and unfence, applied with JSON merge-patch semantics
(RFC 7386, what the API server does with them) to the objects they were computed from."""

from __future__ import annotations

import copy
from typing import Any

from backstop.operator import marks


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null deletes, anything else replaces. Maps left
    empty are dropped, as the API server omits them."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        merged = None if value is None else merge(result.get(key), value)
        if merged is None or merged == {}:
            result.pop(key, None)
        else:
            result[key] = merged
    return result


def deployment(replicas: int, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "llm",
            "resourceVersion": "41",
            "annotations": {"owner": "team-a", **(annotations or {})},
        },
        "spec": {"replicas": replicas},
    }


def node(unschedulable: bool = False, taints: list[dict[str, str]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"taints": taints} if taints else {}
    if unschedulable:
        spec["unschedulable"] = True
    return {"metadata": {"name": "gpu-0", "resourceVersion": "7"}, "spec": spec}


def test_a_hold_records_the_replicas_and_scales_to_zero_in_one_conditional_patch() -> None:
    plan = marks.plan_hold(deployment(3), "pause-a")

    assert plan.patch is not None
    assert plan.patch["metadata"]["resourceVersion"] == "41"
    held = merge(deployment(3), plan.patch)
    assert held["spec"]["replicas"] == 0
    assert held["metadata"]["annotations"] == {
        "owner": "team-a",
        "backstop.io/correction": "pause-a",
        "backstop.io/previous-replicas": "3",
    }
    assert (plan.previous, plan.scaled_from, plan.newly_held) == (3, 3, True)


def test_holding_what_is_already_held_writes_nothing() -> None:
    held = merge(deployment(3), marks.plan_hold(deployment(3), "pause-a").patch)

    again = marks.plan_hold(held, "pause-a")

    assert again.patch is None
    assert again.previous == 3


def test_a_held_workload_scaled_back_up_goes_to_zero_keeping_the_first_count() -> None:
    held = merge(deployment(2), marks.plan_hold(deployment(2), "pause-a").patch)
    held["spec"]["replicas"] = 5

    plan = marks.plan_hold(held, "pause-a")

    assert plan.patch == {"metadata": {"resourceVersion": "41"}, "spec": {"replicas": 0}}
    assert (plan.previous, plan.scaled_from, plan.newly_held) == (2, 5, False)


def test_a_second_correction_joins_the_hold_without_recording_zero() -> None:
    held = merge(deployment(4), marks.plan_hold(deployment(4), "pause-a").patch)

    plan = marks.plan_hold(held, "shutdown-b")
    both = merge(held, plan.patch)

    assert plan.previous == 4
    assert both["metadata"]["annotations"]["backstop.io/correction"] == "pause-a,shutdown-b"
    assert both["metadata"]["annotations"]["backstop.io/previous-replicas"] == "4"


def test_the_status_record_wins_when_the_annotations_were_removed_at_zero() -> None:
    plan = marks.plan_hold(deployment(0), "pause-a", recorded=6)

    assert plan.previous == 6
    assert (
        merge(deployment(0), plan.patch)["metadata"]["annotations"]["backstop.io/previous-replicas"]
        == "6"
    )


def test_release_restores_the_object_as_it_was() -> None:
    original = deployment(3)
    held = merge(original, marks.plan_hold(original, "pause-a").patch)

    plan = marks.plan_release(held, "pause-a", restore=True)

    assert plan.restored_to == 3
    assert merge(held, plan.patch) == original


def test_release_by_one_of_two_holders_keeps_it_at_zero() -> None:
    held = merge(deployment(3), marks.plan_hold(deployment(3), "pause-a").patch)
    held = merge(held, marks.plan_hold(held, "pause-b").patch)

    first = marks.plan_release(held, "pause-a", restore=True)
    after = merge(held, first.patch)

    assert first.remaining == ("pause-b",)
    assert after["spec"]["replicas"] == 0
    assert after["metadata"]["annotations"]["backstop.io/correction"] == "pause-b"
    last = marks.plan_release(after, "pause-b", restore=True)
    assert merge(after, last.patch) == deployment(3)


def test_releasing_a_terminate_leaves_the_workload_at_zero() -> None:
    held = merge(deployment(3), marks.plan_hold(deployment(3), "end-a").patch)

    plan = marks.plan_release(held, "end-a", restore=False)
    after = merge(held, plan.patch)

    assert plan.restored_to is None
    assert after["spec"]["replicas"] == 0
    assert after["metadata"]["annotations"] == {"owner": "team-a"}


def test_releasing_what_this_correction_does_not_hold_writes_nothing() -> None:
    assert marks.plan_release(deployment(3), "pause-a", restore=True).patch is None


def test_fencing_cordons_taints_and_remembers_the_node_and_unfencing_restores_it() -> None:
    other = {"key": "dedicated", "value": "ml", "effect": "NoSchedule"}
    original = node(taints=[other])

    fence = marks.plan_fence(original, "shutdown-a")
    fenced = merge(original, fence.patch)

    assert fenced["spec"]["unschedulable"] is True
    assert fenced["spec"]["taints"] == [
        other,
        {"key": "backstop.io/shutdown", "value": "shutdown-a", "effect": "NoSchedule"},
    ]
    assert fenced["metadata"]["annotations"]["backstop.io/previous-unschedulable"] == "false"
    assert marks.plan_fence(fenced, "shutdown-a").patch is None
    unfence = marks.plan_unfence(fenced, "shutdown-a")
    assert merge(fenced, unfence.patch) == original
    assert unfence.left_cordoned is False


def test_a_node_cordoned_before_the_shutdown_stays_cordoned_after_it() -> None:
    original = node(unschedulable=True)
    fenced = merge(original, marks.plan_fence(original, "shutdown-a").patch)

    plan = marks.plan_unfence(fenced, "shutdown-a")
    after = merge(fenced, plan.patch)

    assert plan.left_cordoned is True
    assert after == original


def test_a_node_fenced_twice_keeps_one_taint_until_the_last_fence_lifts() -> None:
    fenced = merge(node(), marks.plan_fence(node(), "shutdown-a").patch)
    fenced = merge(fenced, marks.plan_fence(fenced, "shutdown-b").patch)
    assert [t["value"] for t in fenced["spec"]["taints"]] == ["shutdown-a"]

    first = merge(fenced, marks.plan_unfence(fenced, "shutdown-a").patch)

    assert first["spec"]["unschedulable"] is True
    assert first["spec"]["taints"] == [
        {"key": "backstop.io/shutdown", "value": "shutdown-b", "effect": "NoSchedule"}
    ]
    last = merge(first, marks.plan_unfence(first, "shutdown-b").patch)
    assert last == {"metadata": {"name": "gpu-0", "resourceVersion": "7"}}
