"""Before acting, the CLI shows the targets a scope reaches (PreviewScope), as the controller
resolves them from the latest reports."""

from __future__ import annotations

import os

import grpc
import pytest

from backstop.api.v1 import control_pb2, control_pb2_grpc, types_pb2
from tests.cli.conftest import Rig
from tests.cli.terminal import run_on_terminal


def _preview(rig: Rig, scope: types_pb2.Scope, limit: int = 0) -> control_pb2.PreviewScopeResponse:
    with grpc.insecure_channel(rig.cluster.address) as channel:
        stub = control_pb2_grpc.ControlServiceStub(channel)
        request = control_pb2.PreviewScopeRequest(scope=scope, limit=limit)
        response: control_pb2.PreviewScopeResponse = stub.PreviewScope(request, timeout=10)
        return response


def test_preview_resolves_nodes_and_workloads_with_whole_counts(rig: Rig) -> None:
    every = _preview(rig, types_pb2.Scope(all=True), limit=2)
    assert list(every.node_ids) == ["node-a", "node-b"]
    assert every.workload_count == 3
    assert len(every.workloads) == 2  # the list is cut, the count is not
    node_b = _preview(rig, types_pb2.Scope(node_ids=["node-b"]))
    assert list(node_b.node_ids) == ["node-b"]
    assert {w.root_pid for w in node_b.workloads} == {rig.b1.pid, rig.b2.pid}
    one = _preview(rig, types_pb2.Scope(workload_ids=[rig.workload_id(rig.b2.pid)]))
    assert list(one.node_ids) == ["node-a", "node-b"]  # sent to every node, as the engine does
    assert [w.root_pid for w in one.workloads] == [rig.b2.pid]
    none = _preview(rig, types_pb2.Scope(model_hashes=["0123456789abcdef"]))
    assert none.workload_count == 0
    with pytest.raises(grpc.RpcError) as unknown:
        _preview(rig, types_pb2.Scope(node_ids=["node-z"]))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def _env(rig: Rig) -> dict[str, str]:
    return dict(
        os.environ, BACKSTOP_CONTROLLER=rig.cluster.address, BACKSTOP_INSECURE="1",
        BACKSTOP_USER="e2e",
    )  # fmt: skip


def test_the_confirmation_prompt_shows_the_targets(rig: Rig) -> None:
    session = run_on_terminal(
        "terminate", "--node", "node-b", "--reason", "runaway", env=_env(rig), answer="n"
    )
    assert session.code == 2, session.text
    b1, b2 = sorted(
        (rig.workload_id(p.pid), p.pid) for p in (rig.b1, rig.b2)
    )  # listed by node, then workload id
    assert (
        f"targets: 1 node(s) (node-b); 2 workload(s): {b1[0]} on node-b (pid {b1[1]}, "
    ) in session.text
    assert f"{b2[0]} on node-b (pid {b2[1]}, " in session.text
    assert "terminate these targets? [y/N]" in session.text
    assert "cancelled; nothing was changed" in session.text
    assert rig.cluster.json("corrections") == []
    assert rig.b1.poll() is None
    assert rig.b2.poll() is None


def test_an_all_prompt_shows_every_target_escaped_and_acts_when_confirmed(rig: Rig) -> None:
    session = run_on_terminal(
        "pause", "--all", "--reason", "incident 7", "--wait", env=_env(rig), answer="y"
    )
    assert session.code == 0, session.text
    assert "targets: 2 node(s) (node-a, node-b); 3 workload(s): " in session.text
    hostile = f"(pid {rig.hostile.pid}, \\x1b[2J\\x1b[Hpwned\\ntwo\\u202eevil -c"
    assert hostile in session.text
    assert b"\x1b" not in session.transcript
    assert "completed: " in session.text
