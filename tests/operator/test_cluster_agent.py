"""The cluster agent's mapping of workloads to reports and of commands to acknowledgements
(the paths that need no cluster; the end-to-end test drives the rest)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from backstop.core.errors import InvalidInput
from backstop.core.models import Action, Command, CorrectionSpec, Scope, TargetState
from backstop.operator.cluster_agent import ClusterAgent, check_security, workload_record
from backstop.operator.crd import CorrectionResource
from backstop.operator.inventory import ClusterReader
from backstop.operator.kube import KubeApi
from backstop.operator.scope import WorkloadKind, WorkloadView
from backstop.operator.settings import OperatorSettings
from backstop.wire.correction_convert import spec_bytes


def view(**changes: Any) -> WorkloadView:
    base = WorkloadView(
        kind=WorkloadKind.DEPLOYMENT,
        namespace="serving",
        name="llm",
        labels={"team": "a"},
        template_labels={"app": "llm"},
        gpus_per_pod=2,
        replicas=3,
        images=("vllm/vllm-openai:v0.6",),
        raw={"metadata": {"creationTimestamp": "2024-05-01T12:00:00Z"}},
    )
    return dataclasses.replace(base, **changes)


def test_a_workload_is_reported_with_its_requested_gpus_labels_and_framework() -> None:
    w = workload_record(view(), "k8s-prod", None)

    assert w.workload_id == "serving/Deployment/llm"
    assert w.node_id == "k8s-prod"
    assert (w.root_pid, w.pids) == (0, ())
    assert w.state == "running"
    assert w.fingerprint.framework == "vllm"
    assert [g.gpu_uuid for g in w.fingerprint.gpus] == [f"nvidia.com/gpu#{i}" for i in range(6)]
    assert w.labels["app"] == "llm"
    assert w.labels["backstop.io/kind"] == "deployment"
    assert w.started_at_s == 1714564800.0


def test_a_held_workload_is_reported_paused_or_terminated() -> None:
    held = view(replicas=0, holders=("p",))
    assert workload_record(held, "k8s-prod", Action.PAUSE).state == "paused"
    assert workload_record(held, "k8s-prod", Action.SHUTDOWN).state == "terminated"
    assert workload_record(held, "k8s-prod", Action.PAUSE).fingerprint.gpus == ()


def test_a_secure_operator_needs_its_certificate_and_a_trust_policy(tmp_path: Path) -> None:
    settings = OperatorSettings(controller="10.0.0.5:7443", state_dir=tmp_path)
    with pytest.raises(InvalidInput, match="backstop agent enroll --node-id k8s-default"):
        check_security(settings)
    tls = tmp_path / "tls"
    tls.mkdir()
    for name in ("ca.crt", "node.crt", "node.key"):
        (tls / name).write_text("x")
    with pytest.raises(InvalidInput, match="needs --trust-policy"):
        check_security(settings)
    with pytest.raises(InvalidInput, match="loopback"):
        check_security(OperatorSettings(controller="10.0.0.5:7443", insecure=True))


def command(action: Action, scope: Scope, expires_in_s: float = 60) -> Command:
    now = time.time()
    spec = CorrectionSpec(
        correction_id="cor-0190aa55bb0012345678",
        action=action,
        scope=scope,
        reason="unsafe",
        issuer="alice",
        created_at_s=now,
        expires_at_s=now + expires_in_s,
    )
    return Command(sequence=7, spec=spec, spec_bytes=spec_bytes(spec))


@pytest.fixture
def agent(tmp_path: Path) -> ClusterAgent:
    kube = KubeApi(k8s.ApiClient(k8s.Configuration()))  # never called on these paths

    async def never(name: str, timeout_s: float) -> CorrectionResource | None:
        raise AssertionError("nothing should be waited for")

    return ClusterAgent(
        OperatorSettings(
            controller="127.0.0.1:1", insecure=True, cluster_name="prod", state_dir=tmp_path
        ),
        kube,
        ClusterReader(kube),
        nudge=lambda name: None,
        wait_settled=never,
        holds=dict,
    )


def test_an_expired_command_is_refused_without_touching_the_cluster(agent: ClusterAgent) -> None:
    ack = asyncio.run(agent.on_command(command(Action.PAUSE, Scope(all=True), expires_in_s=-5)))
    assert ack.state is TargetState.REFUSED
    assert ack.sequence == 7
    assert ack.message.startswith("expired")


def test_a_command_that_selects_nothing_here_is_acknowledged_as_such(agent: ClusterAgent) -> None:
    ack = asyncio.run(agent.on_command(command(Action.THROTTLE, Scope(all=True))))
    assert ack.state is TargetState.APPLIED
    assert ack.message == "throttle caps GPUs through node agents; nothing to do for Kubernetes"
    assert agent.inventory().node_id == "k8s-prod"
    assert agent.inventory().labels["backstop.io/kind"] == "kubernetes"
