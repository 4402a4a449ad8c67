"""Clients from other toolchains talk to a real controller: a Go client generated from protos/
(protoc-gen-go, protoc-gen-go-grpc) lists its nodes, and grpcurl finds the services through
server reflection alone. The Go builds are cached (tests/support/go_build.py)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from backstop.simgpu import FakeNvml, default_gpus
from tests.support import go_build
from tests.support.cluster import LocalCluster, wait_for


@pytest.fixture(scope="module")
def open_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A controller in open mode with one agent, node-go, connected."""
    tmp = tmp_path_factory.mktemp("interop")
    local = LocalCluster(tmp)
    try:
        local.start_controller("127.0.0.1:0")
        gpu = FakeNvml(tmp / "gpu")
        gpu.write(default_gpus(1))
        local.start_agent("node-go", gpu.env())
        wait_for(lambda: local.json("nodes") or None, 20, "the agent")
        yield local
    except BaseException:
        print(local.logs())
        raise
    finally:
        local.stop()


def _run(argv: list[str | Path]) -> str:
    proc = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout


@pytest.mark.timeout(600)  # the first run builds the plugins and the client (about a minute)
def test_a_generated_go_client_lists_the_nodes(open_cluster: LocalCluster) -> None:
    client = go_build.listnodes_client()
    assert _run([client, "-addr", open_cluster.address]).split() == ["node-go"]


@pytest.mark.timeout(900)  # the first run builds grpcurl (a few minutes), then it is cached
def test_grpcurl_needs_nothing_but_reflection(open_cluster: LocalCluster) -> None:
    grpcurl = go_build.go_tool(go_build.GRPCURL)
    address = open_cluster.address
    services = _run([grpcurl, "-plaintext", address, "list"]).split()
    assert "backstop.v1.ControlService" in services
    assert "backstop.v1.AgentGateway" in services
    described = _run([grpcurl, "-plaintext", address, "describe", "backstop.v1.ControlService"])
    assert "rpc ListNodes" in described
    listed = _run(
        [grpcurl, "-plaintext", "-d", "{}", address, "backstop.v1.ControlService/ListNodes"]
    )
    assert [n["node_id"] for n in json.loads(listed)["nodes"]] == ["node-go"]
