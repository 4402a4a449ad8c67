"""Idempotent across restarts and conflicts: a restarted operator redoes nothing, one killed
half-way finishes without scaling anything twice or recording 0 as a previous count, and a
write computed from a stale read is refused (resourceVersion) and computed again."""

from __future__ import annotations

import logging
import uuid

import pytest

from backstop.core.errors import Conflict
from backstop.core.models import Action
from backstop.operator.actions import Actions
from backstop.operator.crd import ClusterScope, CorrectionResource, TargetState
from backstop.operator.events import EventRecorder
from backstop.operator.inventory import scalable_view
from backstop.operator.kube import AlreadyExists, Kind, KubeApi
from backstop.operator.scope import WorkloadKind
from tests.operator.rig import GROUP, PLURAL, VERSION, OperatorProcess, Rig, pause, resume, settle
from tests.support.kube import ControlPlane


def test_a_restarted_operator_writes_nothing_that_is_already_done(
    rig: Rig, operator: OperatorProcess
) -> None:
    rig.deployment("llm", 3)
    rig.wait_running("llm", 3)
    name = f"pause-{rig.namespace}"
    rig.apply(pause(name, rig.namespace))
    rig.wait_phase(name, "Applied")
    rig.wait_running("llm", 0)
    generation = rig.read("Deployment", "llm").metadata.generation
    correction_version = rig.correction(name)["metadata"]["resourceVersion"]

    operator.stop()
    operator.start()
    settle(3)  # the first sync and a few resyncs

    held = rig.read("Deployment", "llm")
    assert held.metadata.generation == generation
    assert held.spec.replicas == 0
    assert held.metadata.annotations["backstop.io/previous-replicas"] == "3"
    assert len(rig.events("llm", "BackstopPaused")) == 1
    assert rig.correction(name)["metadata"]["resourceVersion"] == correction_version


def test_an_operator_killed_half_way_finishes_without_scaling_twice(
    rig: Rig, operator: OperatorProcess
) -> None:
    operator.kill()
    rig.deployment("first", 3)
    rig.deployment("second", 2)
    rig.wait_running("first", 3)
    rig.wait_running("second", 2)
    name = f"pause-{rig.namespace}"
    rig.apply(pause(name, rig.namespace))
    # What a crash right after the first hold leaves (each hold is one atomic patch): the
    # Correction with its finalizer and phase Applying, "first" held, "second" untouched.
    rig.custom.patch_cluster_custom_object(
        GROUP, VERSION, PLURAL, name, {"metadata": {"finalizers": ["backstop.io/revert"]}}
    )
    rig.custom.patch_cluster_custom_object_status(
        GROUP,
        VERSION,
        PLURAL,
        name,
        {"status": {"phase": "Applying", "message": "applying pause", "observedGeneration": 1}},
    )
    rig.apps.patch_namespaced_deployment(
        "first",
        rig.namespace,
        {
            "metadata": {
                "annotations": {
                    "backstop.io/correction": name,
                    "backstop.io/previous-replicas": "3",
                }
            },
            "spec": {"replicas": 0},
        },
    )
    rig.wait_running("first", 0)
    generation = rig.read("Deployment", "first").metadata.generation

    operator.start()
    status = rig.wait_phase(name, "Applied")["status"]

    assert status["message"] == "2 Deployments scaled to 0"
    assert {t["name"]: t["previousReplicas"] for t in status["targets"]} == {
        "first": 3,
        "second": 2,
    }
    assert rig.read("Deployment", "first").metadata.generation == generation
    assert rig.events("first", "BackstopPaused") == []
    assert len(rig.events("second", "BackstopPaused")) == 1
    rig.wait_running("second", 0)

    rig.apply(resume(f"resume-{rig.namespace}", name))
    rig.wait_phase(f"resume-{rig.namespace}", "Applied")
    rig.wait_running("first", 3)
    rig.wait_running("second", 2)


def test_a_write_from_a_stale_read_is_refused_and_computed_again(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.deployment("llm", 2)
    kube = KubeApi(rig.plane.api_client())
    actions = Actions(kube, EventRecorder(kube))
    stale = kube.get(Kind.DEPLOYMENT, "llm", rig.namespace)
    rig.scale("Deployment", "llm", 4)  # someone else writes after our read
    correction = CorrectionResource(
        name=f"conflict-{rig.namespace}",
        uid="",
        generation=1,
        resource_version="",
        action=Action.PAUSE,
        reason="test",
        scope=ClusterScope(all=True),
    )

    with caplog.at_level(logging.INFO, logger="backstop.operator.actions"):
        record = actions.hold(scalable_view(WorkloadKind.DEPLOYMENT, stale), correction)

    assert "conflict; reading the object again" in caplog.text
    assert (record.state, record.previous_replicas) == (TargetState.SCALED, 4)
    held = rig.read("Deployment", "llm")
    assert held.spec.replicas == 0
    assert held.metadata.annotations["backstop.io/previous-replicas"] == "4"
    generation = held.metadata.generation

    # A second writer holding the same stale read (another replica of the operator, say)
    # is refused too, and then finds nothing left to do.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="backstop.operator.actions"):
        again = actions.hold(scalable_view(WorkloadKind.DEPLOYMENT, stale), correction)
    assert "conflict; reading the object again" in caplog.text
    assert (again.state, again.previous_replicas) == (TargetState.SCALED, 4)
    after = rig.read("Deployment", "llm")
    assert after.metadata.generation == generation
    assert after.metadata.annotations["backstop.io/previous-replicas"] == "4"


def test_a_status_or_finalizer_write_from_a_stale_read_is_refused(crd: ControlPlane) -> None:
    """The reconciler starts over on these conflicts; the API server must raise them."""
    kube = KubeApi(crd.api_client())
    name = f"stale-{uuid.uuid4().hex[:8]}"
    created = kube.create_correction(
        {
            "apiVersion": "backstop.io/v1",
            "kind": "Correction",
            "metadata": {"name": name},
            "spec": {"action": "pause", "reason": "x", "scope": {"namespaces": ["nowhere"]}},
        }
    )
    stale = created["metadata"]["resourceVersion"]
    try:
        kube.patch(Kind.CORRECTION, name, {"metadata": {"labels": {"touched": "yes"}}})
        with pytest.raises(Conflict):
            kube.patch_correction_status(
                name, {"metadata": {"resourceVersion": stale}, "status": {"phase": "Applied"}}
            )
        with pytest.raises(Conflict):
            kube.patch(
                Kind.CORRECTION,
                name,
                {"metadata": {"resourceVersion": stale, "finalizers": ["backstop.io/revert"]}},
            )
        with pytest.raises(AlreadyExists):
            kube.create_correction(
                {"apiVersion": "backstop.io/v1", "kind": "Correction", "metadata": {"name": name},
                 "spec": {"action": "resume", "resumes": "x", "reason": "x"}}
            )  # fmt: skip
    finally:
        Rig(crd, "default").delete_correction(name)
