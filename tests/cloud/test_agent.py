"""The cloud agent over real providers (moto for AWS, the Compute double for GCP): commands
become holds and stops, holds stay in force, resume starts what was stopped, every action is
journalled first. The controller link itself is driven by the end-to-end test."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from backstop.cloud.agent import CloudAgent, workload_record
from backstop.cloud.aws import AwsProvider
from backstop.cloud.gcp import GcpProvider
from backstop.cloud.resources import CloudResource, hold_key
from backstop.cloud.settings import CloudSettings
from backstop.core.errors import InvalidInput
from backstop.core.models import Action, Command, CorrectionSpec, Scope, TargetState
from backstop.security.audit import verify_file
from backstop.security.keys import generate_key
from backstop.security.quorum import sign_correction
from backstop.wire.correction_convert import spec_bytes
from tests.support.fake_gce import FakeGce
from tests.support.moto_server import REGION, MotoServer

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def settings(tmp_path: Path, provider: str = "aws", **changes: Any) -> CloudSettings:
    base: dict[str, Any] = {
        "provider": provider,
        "controller": "127.0.0.1:1",
        "regions": (REGION,),
        "project": "lab-project",
        "zones": ("us-central1-a",),
        "insecure": True,
        "state_dir": tmp_path / "state",
    }
    return CloudSettings(**{**base, **changes})


def command(
    cid: str, action: Action, scope: Scope | None = None, reverts: str = "", seq: int = 1
) -> Command:
    spec = CorrectionSpec(
        correction_id=cid,
        action=action,
        scope=scope or Scope(all=True),
        reason="test",
        issuer="alice",
        created_at_s=time.time(),
        expires_at_s=time.time() + 3600.0,
        reverts=reverts,
    )
    return Command(sequence=seq, spec=spec, spec_bytes=spec_bytes(spec))


@pytest.fixture
def aws_agent(moto: MotoServer, tmp_path: Path) -> CloudAgent:
    return CloudAgent(settings(tmp_path), AwsProvider([REGION], endpoint_url=moto.url))


def journal(agent: CloudAgent) -> list[tuple[str, str]]:
    lines = (agent.settings.state_dir / "audit.jsonl").read_text().splitlines()
    return [(json.loads(x)["action"], json.loads(x)["subject"]) for x in lines]


def test_the_account_is_one_node_and_its_gpu_resources_are_workloads(
    moto: MotoServer, aws_agent: CloudAgent
) -> None:
    [iid] = moto.gpu_instances(1, team="llm")
    moto.endpoint("chat", instances=1)

    report = run(aws_agent.sync())

    assert aws_agent.node_id == "aws-123456789012"
    node = aws_agent.inventory()
    assert node.labels["backstop.io/kind"] == "cloud"
    assert node.labels["backstop.io/gpus"] == "9"  # 8 A100s and one T4
    by_id = {w.workload_id: w for w in report.workloads}
    assert set(by_id) == {f"aws/{REGION}/ec2/{iid}", f"aws/{REGION}/sagemaker/chat"}
    instance = by_id[f"aws/{REGION}/ec2/{iid}"]
    assert instance.node_id == "aws-123456789012"
    assert instance.labels["team"] == "llm"
    assert instance.labels["backstop.io/resource"] == "ec2-instance"
    assert instance.labels["backstop.io/instance-type"] == "p4d.24xlarge"
    assert len(instance.fingerprint.gpus) == 8
    assert instance.state == "running"


def test_pause_stops_and_holds_and_a_restart_by_hand_is_undone(
    moto: MotoServer, aws_agent: CloudAgent
) -> None:
    [iid] = moto.gpu_instances(1)

    ack = run(aws_agent.on_command(command("cor-p1", Action.PAUSE)))

    assert ack.state is TargetState.APPLIED, ack.message
    assert [o.outcome for o in ack.outcomes] == ["applied"]
    assert moto.instance_state(iid) == "stopped"
    assert moto.instance_tags(iid)[hold_key("cor-p1")] == "pause"
    # someone starts it again from the console: the next sync stops it
    moto.client("ec2").start_instances(InstanceIds=[iid])
    assert moto.instance_state(iid) == "running"
    report = run(aws_agent.sync())
    assert moto.instance_state(iid) == "stopped"
    assert [w.state for w in report.workloads] == ["paused"]
    workload_id = f"aws/{REGION}/ec2/{iid}"
    assert journal(aws_agent) == [
        ("cloud.hold", workload_id),
        ("cloud.stop", workload_id),
        ("cloud.stop", workload_id),
    ]
    assert verify_file(aws_agent.settings.state_dir / "audit.jsonl").ok


def test_resume_starts_only_when_the_last_hold_goes(
    moto: MotoServer, aws_agent: CloudAgent
) -> None:
    [iid] = moto.gpu_instances(1)
    moto.endpoint("chat", instances=2)
    run(aws_agent.on_command(command("cor-a", Action.PAUSE, seq=1)))
    run(aws_agent.on_command(command("cor-b", Action.SHUTDOWN, seq=2)))
    assert moto.endpoint_capacity("chat") == 0

    first = run(aws_agent.on_command(command("cor-r1", Action.RESUME, reverts="cor-a", seq=3)))

    assert first.state is TargetState.APPLIED
    assert {o.outcome for o in first.outcomes} == {"skipped"}
    assert all("still held by cor-b" in o.detail for o in first.outcomes)
    assert moto.instance_state(iid) == "stopped"

    second = run(aws_agent.on_command(command("cor-r2", Action.RESUME, reverts="cor-b", seq=4)))

    assert second.state is TargetState.APPLIED, second.message
    assert {o.outcome for o in second.outcomes} == {"applied"}
    assert moto.instance_state(iid) == "running"
    assert moto.endpoint_capacity("chat") == 2
    assert not any(k.startswith("backstop-hold-") for k in moto.instance_tags(iid))


def test_the_scope_picks_resources_by_their_labels(moto: MotoServer, aws_agent: CloudAgent) -> None:
    [llm] = moto.gpu_instances(1, team="llm")
    [other] = moto.gpu_instances(1, team="vision")
    scope = Scope(selector=(("team", "llm", True),))

    ack = run(aws_agent.on_command(command("cor-s", Action.TERMINATE, scope)))

    assert [o.workload_id for o in ack.outcomes] == [f"aws/{REGION}/ec2/{llm}"]
    assert (moto.instance_state(llm), moto.instance_state(other)) == ("stopped", "running")
    assert moto.instance_tags(llm)[hold_key("cor-s")] == "terminate"  # stopped, never deleted


def test_commands_for_other_nodes_throttle_and_unknown_resumes_touch_nothing(
    moto: MotoServer, aws_agent: CloudAgent
) -> None:
    [iid] = moto.gpu_instances(1)

    other = run(aws_agent.on_command(command("cor-o", Action.PAUSE, Scope(node_ids=("gpu-1",)))))
    throttle = run(aws_agent.on_command(command("cor-t", Action.THROTTLE, seq=2)))
    resume = run(aws_agent.on_command(command("cor-u", Action.RESUME, reverts="cor-x", seq=3)))

    assert (other.state, other.message) == (TargetState.APPLIED, "no cloud resource in scope")
    assert throttle.message == "nothing to throttle at the cloud level"
    assert resume.message == "nothing of cor-x here to undo"
    assert moto.instance_state(iid) == "running"


def test_gcp_shutdown_and_resume_through_labels(gce: FakeGce, tmp_path: Path) -> None:
    gce.add("llm-1", labels={"team": "llm"})
    gce.add("llm-2", status="TERMINATED")
    agent = CloudAgent(
        settings(tmp_path, "gcp"),
        GcpProvider(gce.project, ["us-central1-a"], endpoint_url=gce.url),
    )

    ack = run(agent.on_command(command("cor-g", Action.SHUTDOWN)))

    assert ack.state is TargetState.APPLIED, ack.message
    assert agent.node_id == "gcp-lab-project"
    assert {o.workload_id: o.detail.split(";")[1].strip() for o in ack.outcomes} == {
        "gcp/us-central1-a/gce/llm-1": "instances.stop llm-1 (was running)",
        "gcp/us-central1-a/gce/llm-2": "already stopped",
    }
    assert gce.status("llm-1") == "TERMINATED"
    assert gce.labels("llm-2")[hold_key("cor-g")] == "shutdown"

    run(agent.on_command(command("cor-gr", Action.RESUME, reverts="cor-g", seq=2)))

    assert gce.status("llm-1") == "RUNNING"
    assert gce.status("llm-2") == "RUNNING"  # stopped before, but held: resume starts it
    assert gce.labels("llm-1") == {"team": "llm"}


def test_a_failing_stop_fails_the_command_with_the_cloud_s_reason(
    gce: FakeGce, tmp_path: Path
) -> None:
    gce.add("llm-1")
    provider = GcpProvider(gce.project, ["us-central1-a"], endpoint_url=gce.url)
    agent = CloudAgent(settings(tmp_path, "gcp"), provider)
    gce.label_races = 100

    ack = run(agent.on_command(command("cor-f", Action.PAUSE)))

    assert ack.state is TargetState.FAILED
    assert "kept changing" in ack.outcomes[0].detail
    assert gce.status("llm-1") == "RUNNING"  # no stop without its hold mark


def test_settings_are_checked_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="--region"):
        settings(tmp_path, regions=()).validate()
    with pytest.raises(InvalidInput, match="--project"):
        settings(tmp_path, "gcp", project="").validate()
    with pytest.raises(InvalidInput, match="--provider"):
        settings(tmp_path, "azure").validate()
    with pytest.raises(InvalidInput, match="loopback"):
        CloudAgent(settings(tmp_path, controller="10.0.0.1:7443"), _NoProvider())
    with pytest.raises(InvalidInput, match="tls"):
        CloudAgent(settings(tmp_path, insecure=False), _NoProvider())


def test_a_correction_id_that_cannot_be_a_label_is_refused() -> None:
    with pytest.raises(InvalidInput, match="cannot name a cloud hold mark"):
        hold_key("Cor With Spaces")


def test_held_resources_report_their_hold() -> None:
    r = CloudResource(
        "aws/r/ec2/i-1",
        "ec2-instance",
        "i-1",
        "r",
        "stopped",
        "p5.48xlarge",
        ("H100",),
        {hold_key("cor-1"): "pause", "bad key!": "x"},
    )
    w = workload_record(r, "aws-1", "aws")
    assert w.state == "paused"
    assert "bad key!" not in w.labels
    assert w.labels[hold_key("cor-1")] == "pause"


class _NoProvider:
    name = "aws"
    account = "1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--provider", "aws"], "--provider aws needs at least one --region"),
        (["--provider", "gcp", "--zone", "z"], "--provider gcp needs --project"),
        (
            ["--provider", "aws", "--region", "us-east-1", "--report-interval", "0"],
            "give seconds within (0,",
        ),
        (["--provider", "azure"], "invalid choice: 'azure'"),
    ],
)
def test_the_command_line_refuses_bad_input_before_calling_the_cloud(
    args: list[str], message: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "backstop", "--insecure", "cloud", "run",
         "--state-dir", str(tmp_path), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert message in done.stderr


def test_a_plaintext_link_off_loopback_is_refused_before_calling_the_cloud(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run(
        [sys.executable, "-m", "backstop", "--insecure", "--controller", "10.1.2.3:7443",
         "cloud", "run", "--provider", "aws", "--region", "us-east-1",
         "--state-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert done.returncode == 2
    assert "plaintext is allowed only on loopback" in done.stderr
    assert "credentials" not in done.stderr  # refused before any AWS call


def test_a_resume_whose_start_fails_says_the_hold_is_gone_and_what_to_do(
    gce: FakeGce, tmp_path: Path
) -> None:
    gce.add("llm-1")
    agent = CloudAgent(
        settings(tmp_path, "gcp"),
        GcpProvider(gce.project, ["us-central1-a"], endpoint_url=gce.url),
    )
    run(agent.on_command(command("cor-h", Action.PAUSE)))
    gce.set_status("llm-1", "STOPPING")  # still on its way down: start is refused

    ack = run(agent.on_command(command("cor-hr", Action.RESUME, reverts="cor-h", seq=2)))

    assert ack.state is TargetState.FAILED
    assert "released, but it did not start" in ack.outcomes[0].detail
    assert hold_key("cor-h") not in gce.labels("llm-1")  # never stopped again by a sync


def test_a_resume_needs_the_quorum_of_the_hold_it_lifts(moto: MotoServer, tmp_path: Path) -> None:
    """The hold marks carry the held action: lifting a shutdown needs its two approvals."""
    keys = {name: generate_key() for name in ("alice", "bob", "carol")}
    roles = {"alice": "operator", "bob": "approver", "carol": "approver"}
    people = [{"name": n, "role": r, "keys": [keys[n].public_text()]} for n, r in roles.items()]
    policy = tmp_path / "trust.json"
    policy.write_text(json.dumps({"people": people, "quorum": {"shutdown": 2}}))
    agent = CloudAgent(
        settings(tmp_path, trust_policy=policy), AwsProvider([REGION], endpoint_url=moto.url)
    )
    [iid] = moto.gpu_instances(1)

    def signed(cmd: Command, *approvers: str) -> Command:
        people = [("alice", "issuer"), *((a, "approver") for a in approvers)]
        records = tuple(
            sign_correction(keys[p], cmd.spec_bytes, signer=p, role=role, signed_at_s=1.0)
            for p, role in people
        )
        return dataclasses.replace(cmd, signatures=records)

    held = run(agent.on_command(signed(command("cor-s", Action.SHUTDOWN), "bob", "carol")))
    assert held.state is TargetState.APPLIED, held.message
    assert moto.instance_state(iid) == "stopped"

    resume = command("cor-r", Action.RESUME, reverts="cor-s", seq=2)
    alone = run(agent.on_command(signed(resume)))
    assert alone.state is TargetState.REFUSED, alone.message
    assert "resume needs 2 approvals" in alone.message
    assert moto.instance_state(iid) == "stopped"
    assert moto.instance_tags(iid)[hold_key("cor-s")] == "shutdown"

    approved = run(agent.on_command(signed(resume, "bob", "carol")))
    assert approved.state is TargetState.APPLIED, approved.message
    assert moto.instance_state(iid) == "running"
