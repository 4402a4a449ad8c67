"""Bad Corrections are refused by the API server itself (the CRD's schema and CEL rules), with
a message that says what is wrong, and nothing is stored; a spec the schema lets through but
the operator cannot read fails plainly in its status."""

from __future__ import annotations

import contextlib
import uuid

import pytest
from kubernetes.client.rest import ApiException

from tests.operator.rig import GROUP, PLURAL, VERSION, Rig
from tests.support.kube import ControlPlane


def manifest(name: str, spec: str) -> str:
    return f"apiVersion: backstop.io/v1\nkind: Correction\nmetadata:\n  name: {name}\nspec:\n{spec}"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param(
            "  action: explode\n  reason: x\n  scope: {all: true}\n",
            'spec.action: Unsupported value: "explode": supported values: '
            '"pause", "terminate", "shutdown", "resume"',
            id="bad-action",
        ),
        pytest.param(
            "  action: pause\n  scope: {all: true}\n",
            "spec.reason: Required value",
            id="missing-reason",
        ),
        pytest.param(
            '  action: pause\n  reason: ""\n  scope: {all: true}\n',
            "spec.reason in body should be at least 1 chars long",
            id="empty-reason",
        ),
        pytest.param(
            "  action: resume\n  reason: x\n",
            "a resume must name the Correction it undoes in spec.resumes",
            id="resume-without-resumes",
        ),
        pytest.param(
            "  action: pause\n  reason: x\n",
            "spec.scope is required (use scope.all: true for everything)",
            id="pause-without-scope",
        ),
        pytest.param(
            "  action: pause\n  reason: x\n  scope: {nodes: gpu-node-0}\n",
            'spec.scope.nodes: Invalid value: "string": spec.scope.nodes in body must be of '
            "type array",
            id="nodes-not-a-list",
        ),
    ],
)
def test_an_invalid_correction_is_refused_by_the_api_server(
    crd: ControlPlane, spec: str, message: str
) -> None:
    name = f"bad-{uuid.uuid4().hex[:8]}"
    result = crd.kubectl("apply", "-f", "-", input_text=manifest(name, spec), check=False)

    assert result.returncode != 0
    assert message in result.stderr
    assert 'The Correction "' + name + '" is invalid' in result.stderr
    missing = crd.kubectl("get", "correction", name, check=False)
    assert "NotFound" in missing.stderr


def test_a_correction_spec_cannot_be_changed_once_made(crd: ControlPlane) -> None:
    name = f"fixed-{uuid.uuid4().hex[:8]}"
    first = "  action: pause\n  reason: x\n  scope: {namespaces: [nowhere]}\n"
    crd.kubectl("apply", "-f", "-", input_text=manifest(name, first))
    try:
        changed = crd.kubectl(
            "apply",
            "-f",
            "-",
            input_text=manifest(name, first.replace("nowhere", "everywhere")),
            check=False,
        )
        assert changed.returncode != 0
        assert (
            "spec is immutable: delete this Correction (which reverts it) and create a new one"
            in changed.stderr
        )
    finally:
        with contextlib.suppress(ApiException):
            Rig(crd, "default").custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)


def test_a_selector_the_operator_cannot_read_fails_in_the_status(rig: Rig) -> None:
    name = f"odd-{rig.namespace}"
    rig.apply(
        manifest(
            name,
            "  action: pause\n  reason: x\n  scope:\n    selector:\n      matchExpressions:\n"
            "      - {key: app, operator: Near, values: [llm]}\n",
        )
    )

    status = rig.wait_phase(name, "Failed")["status"]

    assert status["message"] == (
        "spec.scope.selector.matchExpressions[0].operator 'Near' is not one of In, NotIn, "
        "Exists, DoesNotExist"
    )
    assert status["targetCount"] == 0
