"""Outcomes said plainly, for the status, the Events and the controller's acknowledgement."""

from __future__ import annotations

from backstop.operator.crd import Phase, TargetRecord, TargetState
from backstop.operator.status import (
    NOTHING_IN_SCOPE,
    phase_of,
    status_body,
    summarize_apply,
    summarize_revert,
)

S = TargetState


def t(kind: str, name: str, state: TargetState, message: str = "") -> TargetRecord:
    return TargetRecord(kind, "" if kind == "Node" else "ns", name, state, None, message)


def test_an_apply_is_counted_by_kind() -> None:
    targets = [
        t("Deployment", "a", S.SCALED),
        t("Deployment", "b", S.SCALED),
        t("StatefulSet", "c", S.SCALED),
        t("Pod", "d", S.DELETED),
        t("Pod", "e", S.SKIPPED, "owned by DaemonSet/exporter"),
        t("Node", "gpu-0", S.CORDONED),
    ]
    assert summarize_apply(targets) == (
        "2 Deployments scaled to 0, 1 StatefulSet scaled to 0, 1 pod deleted, "
        "1 pod skipped (owned by DaemonSet/exporter), 1 node cordoned and tainted"
    )


def test_nothing_in_scope_is_said_plainly() -> None:
    assert summarize_apply([]) == NOTHING_IN_SCOPE == "no workloads in scope; nothing to do"
    assert summarize_apply([t("Node", "gpu-0", S.CORDONED), t("Node", "gpu-1", S.CORDONED)]) == (
        "no workloads in scope; nothing to do, 2 nodes cordoned and tainted"
    )


def test_failures_are_named_and_make_the_phase_failed() -> None:
    targets = [
        t("Deployment", "a", S.SCALED),
        t("Deployment", "b", S.FAILED, "forbidden"),
    ]
    assert summarize_apply(targets) == (
        "1 Deployment scaled to 0; 1 failed: Deployment ns/b: forbidden"
    )
    assert phase_of(targets, Phase.APPLIED) is Phase.FAILED
    assert phase_of(targets[:1], Phase.APPLIED) is Phase.APPLIED


def test_a_revert_says_what_came_back_and_what_could_not() -> None:
    targets = [
        t("Deployment", "a", S.RESTORED),
        t("StatefulSet", "b", S.STILL_HELD),
        t("Pod", "c", S.DELETED),
        t("Node", "gpu-0", S.UNCORDONED),
    ]
    assert summarize_revert(targets) == (
        "1 Deployment restored to its previous replicas, 1 StatefulSet still held by another "
        "Correction, 1 node uncordoned, 1 pod deleted earlier not brought back (bare pods "
        "cannot be)"
    )
    assert summarize_revert([]) == "nothing was held; nothing to do"


def test_the_status_lists_nodes_first_and_counts_what_was_acted_on() -> None:
    body = status_body(
        Phase.APPLIED,
        "m",
        [t("Pod", "p", S.SKIPPED), t("Deployment", "a", S.SCALED), t("Node", "n", S.CORDONED)],
        3,
    )
    assert body["phase"] == "Applied"
    assert body["observedGeneration"] == 3
    assert body["targetCount"] == 2
    assert [x["name"] for x in body["targets"]] == ["n", "a", "p"]
