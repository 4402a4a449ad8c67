"""End to end: `backstop cloud run` for an AWS account (moto server) and a GCP project (the
Compute REST double) joined to a real controller; the CLI sees their GPU instances and
endpoints, and `shutdown --all` stops them all, `resume` starts them again."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from backstop.cloud.resources import hold_key
from tests.support.cluster import LocalCluster, cluster, wait_for
from tests.support.fake_gce import FakeGce, gce
from tests.support.moto_server import CREDENTIALS, REGION, MotoServer, moto, moto_process

__all__ = ["cluster", "gce", "moto", "moto_process"]

pytestmark = pytest.mark.e2e


@dataclass
class Clouds:
    cluster: LocalCluster
    moto: MotoServer
    gce: FakeGce
    instances: list[str]


@pytest.fixture
def clouds(cluster: LocalCluster, moto: MotoServer, gce: FakeGce) -> Clouds:
    instances = moto.gpu_instances(2, team="llm")
    moto.gpu_instances(1, "t3.large")  # no GPU: not Backstop's business
    moto.endpoint("chat", instances=2)
    gce.add("llm-1", labels={"team": "llm"})
    gce.add(
        "llm-2",
        zone="us-central1-b",
        accelerators=(("nvidia-h100-80gb", 8),),
        machine_type="a3-highgpu-8g",
        group="llm-pool",  # a managed instance group member: stopped through its group
    )
    cluster.start_controller()
    cluster.start_cloud_agent(
        "aws", moto.url, "--region", REGION, env={**os.environ, **CREDENTIALS}
    )
    cluster.start_cloud_agent(
        "gcp",
        gce.url,
        "--project",
        gce.project,
        "--zone",
        "us-central1-a",
        "--zone",
        "us-central1-b",
    )
    return Clouds(cluster, moto, gce, instances)


def test_shutdown_all_stops_every_cloud_gpu_and_resume_starts_them(clouds: Clouds) -> None:
    c = clouds.cluster

    def all_reported() -> list[dict[str, object]] | None:
        workloads = c.json("workloads")
        return workloads if len(workloads) == 5 else None

    workloads = wait_for(all_reported, 30, "the cloud agents' workloads")
    nodes = {n["node_id"]: n for n in c.json("nodes")}
    assert set(nodes) == {"aws-123456789012", "gcp-lab-project"}
    assert nodes["aws-123456789012"]["labels"]["backstop.io/provider"] == "aws"
    assert {w["workload_id"] for w in workloads} == {
        *(f"aws/{REGION}/ec2/{i}" for i in clouds.instances),
        f"aws/{REGION}/sagemaker/chat",
        "gcp/us-central1-a/gce/llm-1",
        "gcp/us-central1-b/gce/llm-2",
    }
    assert "gcp/us-central1-b/gce/llm-2" in c.cli("workloads").out

    shutdown = c.cli(
        "shutdown", "--all", "--reason", "e2e", "--yes", "--wait", "-o", "json", timeout_s=90
    )

    assert shutdown.code == 0, shutdown.err + shutdown.out + c.logs()
    correction = shutdown.json()
    cid = correction["spec"]["correction_id"]
    assert {t["node_id"]: t["state"] for t in correction["targets"]} == {
        "aws-123456789012": "applied",
        "gcp-lab-project": "applied",
    }
    assert [clouds.moto.instance_state(i) for i in clouds.instances] == ["stopped"] * 2
    assert clouds.moto.endpoint_capacity("chat") == 0
    assert clouds.gce.status("llm-1") == "TERMINATED"
    assert clouds.gce.status("llm-2", "us-central1-b") == "TERMINATED"
    assert clouds.gce.repairs == []  # never stopped behind its group's back
    assert clouds.moto.instance_tags(clouds.instances[0])[hold_key(cid)] == "shutdown"

    # a GPU instance restarted behind Backstop's back is stopped again by the next sync
    clouds.gce.set_status("llm-1", "RUNNING")
    wait_for(lambda: clouds.gce.status("llm-1") == "TERMINATED" or None, 15, "the hold")

    resumed = c.cli("resume", cid, "--wait", timeout_s=90)

    assert resumed.code == 0, resumed.err + resumed.out
    assert [clouds.moto.instance_state(i) for i in clouds.instances] == ["running"] * 2
    assert clouds.moto.endpoint_capacity("chat") == 2
    assert clouds.gce.status("llm-1") == "RUNNING"
    assert clouds.gce.labels("llm-1") == {"team": "llm"}
    assert c.json("status", cid)["state"] == "reverted"
