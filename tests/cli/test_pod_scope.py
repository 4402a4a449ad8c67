"""``--namespace`` and ``--pod`` on the correcting verbs, and pods in ``backstop workloads``.

The flags become requirements on the labels the node agent sets on the workloads it
attributes to pods, so nothing new crosses the wire: a fake control service resolves the
scope received with the same matching the controller and the agents use.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent import futures
from types import MappingProxyType

import grpc
import pytest

from backstop.api.v1 import control_pb2, control_pb2_grpc
from backstop.cli.main import CORRECTION_VERBS, build_parser, main
from backstop.cli.operate import scope_from_args
from backstop.core.errors import InvalidInput
from backstop.core.models import Fingerprint, GpuUse, Workload
from backstop.core.scope import (
    GPU_ALLOCATION_LABEL,
    NAMESPACE_LABEL,
    POD_LABEL,
    POD_UID_LABEL,
    workload_in_scope,
)
from backstop.wire import convert, correction_convert


def _workload(wid: str, pid: int, **labels: str) -> Workload:
    fp = Fingerprint(cmdline=("python", wid), gpus=(GpuUse("GPU-0", 1 << 30),))
    return Workload(wid, "node-a", pid, (pid,), fp, labels=MappingProxyType(labels))


WORKLOADS = [
    _workload(
        "wl-server", 101,
        **{NAMESPACE_LABEL: "team-a", POD_LABEL: "vllm-0", GPU_ALLOCATION_LABEL: "allocated"},
    ),
    _workload("wl-other", 102, **{NAMESPACE_LABEL: "team-a", POD_LABEL: "vllm-1"}),
    _workload(
        "wl-notebook", 103,
        **{NAMESPACE_LABEL: "team-b", POD_LABEL: "nb", GPU_ALLOCATION_LABEL: "unallocated"},
    ),
    _workload("wl-host", 104),
]  # fmt: skip


class FakeControl(control_pb2_grpc.ControlServiceServicer):
    def __init__(self) -> None:
        self.previewed: list[control_pb2.PreviewScopeRequest] = []

    def PreviewScope(
        self, request: control_pb2.PreviewScopeRequest, context: grpc.ServicerContext
    ) -> control_pb2.PreviewScopeResponse:
        self.previewed.append(request)
        scope = correction_convert.scope_from_pb(request.scope)
        found = [w for w in WORKLOADS if workload_in_scope(scope, w)]
        return control_pb2.PreviewScopeResponse(
            node_ids=["node-a"],
            workload_count=len(found),
            workloads=[convert.workload_to_pb(w) for w in found],
        )

    def ListWorkloads(
        self, request: control_pb2.ListWorkloadsRequest, context: grpc.ServicerContext
    ) -> control_pb2.ListWorkloadsResponse:
        return control_pb2.ListWorkloadsResponse(
            workloads=[convert.workload_to_pb(w) for w in WORKLOADS]
        )


@pytest.fixture
def control(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> Iterator[FakeControl]:
    servicer = FakeControl()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    control_pb2_grpc.add_ControlServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    monkeypatch.setenv("BACKSTOP_CONTROLLER", f"127.0.0.1:{port}")
    monkeypatch.setenv("BACKSTOP_INSECURE", "1")
    monkeypatch.setenv("BACKSTOP_USER", "tester")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "250")
    try:
        yield servicer
    finally:
        server.stop(grace=None)


def _scope(*argv: str) -> tuple[tuple[str, str, bool], ...]:
    return scope_from_args(build_parser().parse_args(list(argv))).selector


@pytest.mark.parametrize("verb", sorted(CORRECTION_VERBS))
def test_every_correcting_verb_scopes_by_namespace_and_pod(verb: str) -> None:
    assert _scope(verb, "--namespace", "team-a") == ((NAMESPACE_LABEL, "team-a", True),)
    pod = ((NAMESPACE_LABEL, "team-a", True), (POD_LABEL, "vllm-0", True))
    assert _scope(verb, "--pod", "team-a/vllm-0") == pod
    assert _scope(verb, "--namespace", "team-a", "--pod", "team-a/vllm-0") == pod


def test_they_combine_with_other_scope_flags() -> None:
    selector = _scope("pause", "--selector", "backstop.io/framework=vllm", "--namespace", "ns")
    assert selector == (("backstop.io/framework", "vllm", True), (NAMESPACE_LABEL, "ns", True))


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (("--pod", "vllm-0"), "expected NAMESPACE/NAME"),
        (("--pod", "team-a/"), "expected NAMESPACE/NAME"),
        (("--pod", "team-a/Vllm_0"), "is not a pod name"),
        (("--namespace", "Team-A"), "not a Kubernetes namespace name"),
        (("--namespace", "team-a", "--pod", "team-b/x"), "is not in --namespace"),
        (("--pod", "team-a/" + "x" * 64), f"--selector {POD_UID_LABEL}=UID"),
        (("--all", "--namespace", "team-a"), "--all cannot be combined"),
    ],
)
def test_malformed_pod_scopes_are_refused(argv: tuple[str, ...], why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        _scope("pause", *argv)


def test_a_dry_run_previews_the_pod_and_changes_nothing(
    control: FakeControl, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["terminate", "--pod", "team-a/vllm-0", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run: terminate would reach 1 node(s) (node-a) and 1 workload(s)" in out
    assert "wl-server" in out
    assert "wl-other" not in out
    (request,) = control.previewed
    assert correction_convert.scope_from_pb(request.scope).selector == (
        (NAMESPACE_LABEL, "team-a", True),
        (POD_LABEL, "vllm-0", True),
    )


def test_a_dry_run_of_a_namespace_reaches_its_pods_only(
    control: FakeControl, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pause", "--namespace", "team-a", "--dry-run", "-o", "json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["workload_count"] == 2
    assert sorted(w["workload_id"] for w in found["workloads"]) == ["wl-other", "wl-server"]


def test_the_workloads_table_shows_pods_and_unallocated_gpu_use(
    control: FakeControl, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["workloads"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    assert header[-4:] == ["POD", "GPU", "ALLOC", "COMMAND"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert "team-b/nb" in rows["wl-notebook"]
    assert "unallocated" in rows["wl-notebook"]
    assert "team-a/vllm-0" in rows["wl-server"]
    assert "allocated" in rows["wl-server"]
    assert " - " in rows["wl-host"]


def test_the_workloads_listing_filters_by_pod(
    control: FakeControl, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["workloads", "--pod", "team-b/nb", "-o", "json"]) == 0
    assert [w["workload_id"] for w in json.loads(capsys.readouterr().out)] == ["wl-notebook"]
    assert main(["workloads", "--pod", "nb"]) == 2
    assert "expected NAMESPACE/NAME" in capsys.readouterr().err
