"""Pause and resume through Correction resources, on a real control plane: GPU model servers
scheduled onto kwok GPU nodes go to zero and stay there, and come back exactly as they were."""

from __future__ import annotations

from tests.operator.rig import PLAIN_IMAGE, Rig, pause, poll, resume


def annotations(rig: Rig, kind: str, name: str) -> dict[str, str]:
    return dict(rig.read(kind, name).metadata.annotations or {})


def test_pause_scales_gpu_workloads_to_zero_deletes_bare_gpu_pods_and_spares_the_rest(
    rig: Rig,
) -> None:
    rig.deployment("llm", 3)
    rig.deployment("embed", 2)
    rig.statefulset("ranker", 2)
    rig.deployment("web", 2, gpus=0, image=PLAIN_IMAGE)
    rig.bare_pod("scratch")
    for app, count in (("llm", 3), ("embed", 2), ("ranker", 2), ("web", 2), ("scratch", 1)):
        rig.wait_running(app, count)

    name = f"pause-{rig.namespace}"
    rig.apply(pause(name, rig.namespace))
    status = rig.wait_phase(name, "Applied")["status"]

    assert status["message"] == (
        "2 Deployments scaled to 0, 1 StatefulSet scaled to 0, 1 pod deleted"
    )
    assert status["targetCount"] == 4
    targets = {(t["kind"], t["name"]): t for t in status["targets"]}
    assert set(targets) == {
        ("Deployment", "llm"),
        ("Deployment", "embed"),
        ("StatefulSet", "ranker"),
        ("Pod", "scratch"),
    }
    assert targets[("Deployment", "llm")] == {
        "kind": "Deployment",
        "namespace": rig.namespace,
        "name": "llm",
        "state": "Scaled",
        "previousReplicas": 3,
    }
    assert targets[("StatefulSet", "ranker")]["previousReplicas"] == 2
    assert targets[("Pod", "scratch")]["state"] == "Deleted"

    for kind, app, before in (
        ("Deployment", "llm", 3),
        ("Deployment", "embed", 2),
        ("StatefulSet", "ranker", 2),
    ):
        assert rig.replicas(kind, app) == 0
        marks = annotations(rig, kind, app)
        assert marks["backstop.io/previous-replicas"] == str(before)
        assert marks["backstop.io/correction"] == name
        rig.wait_running(app, 0)
    rig.wait_running("scratch", 0)

    # The Deployment without GPUs is untouched (gpuWorkloadsOnly defaults to true).
    assert rig.replicas("Deployment", "web") == 2
    assert "backstop.io/correction" not in annotations(rig, "Deployment", "web")
    assert len(rig.running("web")) == 2

    paused = rig.events("llm", "BackstopPaused")
    assert len(paused) == 1
    assert f"scaled from 3 to 0 replicas by Correction {name}" in paused[0].message
    assert paused[0].source.component == "backstop-operator"
    assert rig.events("scratch", "BackstopPodDeleted")
    assert "backstop.io/revert" in rig.correction(name)["metadata"]["finalizers"]


def test_a_paused_deployment_scaled_back_up_is_held_at_zero(rig: Rig) -> None:
    rig.deployment("llm", 2)
    rig.wait_running("llm", 2)
    name = f"pause-{rig.namespace}"
    rig.apply(pause(name, rig.namespace))
    rig.wait_phase(name, "Applied")
    rig.wait_running("llm", 0)

    rig.scale("Deployment", "llm", 3)  # someone (or an autoscaler) brings it back

    poll(lambda: rig.events("llm", "BackstopHeld"), "the operator to hold it at zero again")
    poll(lambda: rig.replicas("Deployment", "llm") == 0, "replicas back at zero")
    rig.wait_running("llm", 0)
    # The count to restore is still the one from before the pause, not the scale-up.
    assert annotations(rig, "Deployment", "llm")["backstop.io/previous-replicas"] == "2"
    held = rig.events("llm", "BackstopHeld")[0]
    assert held.type == "Warning"
    assert "scaled back from 3 to 0 replicas" in held.message

    rig.apply(resume(f"resume-{rig.namespace}", name))
    rig.wait_phase(f"resume-{rig.namespace}", "Applied")
    assert rig.replicas("Deployment", "llm") == 2
    rig.wait_running("llm", 2)


def test_gpu_workloads_that_appear_in_scope_while_paused_are_held_too(rig: Rig) -> None:
    rig.deployment("llm", 1)
    rig.wait_running("llm", 1)
    name = f"pause-{rig.namespace}"
    rig.apply(pause(name, rig.namespace))
    rig.wait_phase(name, "Applied")

    rig.deployment("newcomer", 2)
    rig.bare_pod("stray")

    poll(
        lambda: (
            {t["name"] for t in rig.correction(name)["status"]["targets"]}
            >= {"llm", "newcomer", "stray"}
        ),
        "the new workloads to be held",
    )
    assert rig.replicas("Deployment", "newcomer") == 0
    assert annotations(rig, "Deployment", "newcomer")["backstop.io/previous-replicas"] == "2"
    rig.wait_running("newcomer", 0)
    rig.wait_running("stray", 0)
    status = rig.correction(name)["status"]
    assert status["phase"] == "Applied"
    assert status["message"] == "2 Deployments scaled to 0, 1 pod deleted"

    rig.delete_correction(name)
    rig.wait_gone(name)
    assert rig.replicas("Deployment", "newcomer") == 2
    rig.wait_running("newcomer", 2)


def test_resume_restores_the_exact_replicas_and_running_pods(rig: Rig) -> None:
    rig.deployment("llm", 3)
    rig.deployment("embed", 1)
    rig.statefulset("ranker", 2)
    for app, count in (("llm", 3), ("embed", 1), ("ranker", 2)):
        rig.wait_running(app, count)
    name = f"pause-{rig.namespace}"
    rig.apply(pause(name, rig.namespace))
    rig.wait_phase(name, "Applied")
    for app in ("llm", "embed", "ranker"):
        rig.wait_running(app, 0)

    resumed = f"resume-{rig.namespace}"
    rig.apply(resume(resumed, name))
    status = rig.wait_phase(resumed, "Applied")["status"]

    assert status["message"] == (
        "2 Deployments restored to their previous replicas, "
        "1 StatefulSet restored to its previous replicas"
    )
    original = rig.wait_phase(name, "Reverted")["status"]
    assert original["message"].startswith(f"reverted by {resumed}: 2 Deployments restored")
    for kind, app, before in (
        ("Deployment", "llm", 3),
        ("Deployment", "embed", 1),
        ("StatefulSet", "ranker", 2),
    ):
        assert rig.replicas(kind, app) == before
        marks = annotations(rig, kind, app)
        assert "backstop.io/correction" not in marks
        assert "backstop.io/previous-replicas" not in marks
        rig.wait_running(app, before)
    assert rig.events("llm", "BackstopResumed")


def test_deleting_a_correction_reverts_it_through_its_finalizer(rig: Rig) -> None:
    rig.deployment("llm", 2)
    rig.wait_running("llm", 2)
    name = f"pause-{rig.namespace}"
    rig.apply(pause(name, rig.namespace))
    rig.wait_phase(name, "Applied")
    rig.wait_running("llm", 0)

    rig.delete_correction(name)
    rig.wait_gone(name)

    assert rig.replicas("Deployment", "llm") == 2
    assert "backstop.io/correction" not in annotations(rig, "Deployment", "llm")
    rig.wait_running("llm", 2)


def test_overlapping_corrections_release_a_workload_only_when_the_last_one_goes(rig: Rig) -> None:
    rig.deployment("chat", 2, labels={"tier": "serving"})
    rig.deployment("batch", 1, labels={"tier": "batch"})
    rig.deployment("custom", 1, labels={"tier": "serving"}, image="registry.invalid/model-server:1")
    rig.deployment("web", 1, gpus=0, image=PLAIN_IMAGE, labels={"tier": "serving"})
    for app, count in (("chat", 2), ("batch", 1), ("custom", 1), ("web", 1)):
        rig.wait_running(app, count)

    by_tier, by_framework = f"tier-{rig.namespace}", f"vllm-{rig.namespace}"
    rig.apply(
        pause(
            by_tier,
            rig.namespace,
            scope_lines=(
                "    gpuWorkloadsOnly: false\n    selector:\n      matchLabels: {tier: serving}\n"
            ),
        )
    )
    assert {t["name"] for t in rig.wait_phase(by_tier, "Applied")["status"]["targets"]} == {
        "chat",
        "custom",
        "web",
    }
    rig.apply(
        pause(
            by_framework,
            rig.namespace,
            scope_lines=(
                "    selector:\n      matchExpressions:\n"
                "      - {key: backstop.io/framework, operator: In, values: [vllm]}\n"
            ),
        )
    )
    status = rig.wait_phase(by_framework, "Applied")["status"]
    assert {t["name"]: t["previousReplicas"] for t in status["targets"]} == {"chat": 2, "batch": 1}
    assert annotations(rig, "Deployment", "chat")["backstop.io/correction"] == (
        f"{by_tier},{by_framework}"
    )

    rig.delete_correction(by_tier)
    rig.wait_gone(by_tier)
    assert rig.replicas("Deployment", "custom") == 1
    assert rig.replicas("Deployment", "web") == 1
    assert rig.replicas("Deployment", "chat") == 0  # still held by the framework pause
    assert annotations(rig, "Deployment", "chat")["backstop.io/correction"] == by_framework
    assert rig.replicas("Deployment", "batch") == 0

    rig.delete_correction(by_framework)
    rig.wait_gone(by_framework)
    assert rig.replicas("Deployment", "chat") == 2
    assert rig.replicas("Deployment", "batch") == 1
    rig.wait_running("chat", 2)


def test_a_correction_selecting_nothing_is_applied_with_zero_targets(rig: Rig) -> None:
    rig.deployment("web", 1, gpus=0, image=PLAIN_IMAGE)
    rig.wait_running("web", 1)
    name = f"nothing-{rig.namespace}"
    rig.apply(
        pause(name, rig.namespace, scope_lines="    selector:\n      matchLabels: {app: no-such}\n")
    )

    status = rig.wait_phase(name, "Applied")["status"]

    assert status["message"] == "no workloads in scope; nothing to do"
    assert status["targetCount"] == 0
    assert status["targets"] == []
    listing = rig.plane.kubectl("get", "correction", name).stdout.splitlines()
    assert listing[0].split() == ["NAME", "ACTION", "PHASE", "TARGETS", "AGE"]
    assert listing[1].split()[:4] == [name, "pause", "Applied", "0"]
    assert rig.replicas("Deployment", "web") == 1


def test_a_terminate_is_final_resume_refuses_it_and_deleting_it_leaves_zero(rig: Rig) -> None:
    rig.deployment("llm", 2)
    rig.wait_running("llm", 2)
    name = f"end-{rig.namespace}"
    rig.apply(pause(name, rig.namespace).replace("action: pause", "action: terminate"))
    assert rig.wait_phase(name, "Applied")["status"]["message"] == "1 Deployment scaled to 0"
    assert rig.events("llm", "BackstopTerminated")

    undo = f"undo-{rig.namespace}"
    rig.apply(resume(undo, name))
    status = rig.wait_phase(undo, "Failed")["status"]
    assert status["message"] == (
        f"{name} is a terminate, which resume does not undo; delete it to release its "
        "workloads (they stay at 0 replicas)"
    )
    assert rig.replicas("Deployment", "llm") == 0

    rig.delete_correction(name)
    rig.wait_gone(name)
    assert rig.replicas("Deployment", "llm") == 0
    assert "backstop.io/correction" not in annotations(rig, "Deployment", "llm")
    released = rig.events("llm", "BackstopReleased")
    assert len(released) == 1
    assert f"released at 0 replicas (2 before Correction {name})" in released[0].message
