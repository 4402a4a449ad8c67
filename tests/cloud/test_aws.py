"""The AWS provider against moto in server mode, through real boto3 calls over HTTP."""

from __future__ import annotations

import pytest

from backstop.cloud.aws import PREVIOUS_CAPACITY_TAG, PREVIOUS_MIN_SIZE_TAG, AwsProvider
from backstop.cloud.resources import RUNNING, STOPPED, CloudResource
from backstop.core.errors import ActuationError
from tests.support.moto_server import REGION, MotoServer, gpu_group, group_state


def provider(moto: MotoServer) -> AwsProvider:
    return AwsProvider([REGION], endpoint_url=moto.url)


def by_name(p: AwsProvider) -> dict[str, CloudResource]:
    return {r.name: r for r in p.resources()}


def test_inventory_counts_gpu_instances_and_gpu_endpoints_only(moto: MotoServer) -> None:
    big = moto.gpu_instances(1, "p4d.24xlarge", team="llm", Name="serving-1")
    small = moto.gpu_instances(1, "g5.xlarge")
    moto.gpu_instances(2, "t3.micro")  # no GPU
    moto.endpoint("chat", instances=2)

    found = by_name(provider(moto))

    assert set(found) == {big[0], small[0], "chat"}
    instance = found[big[0]]
    assert instance.workload_id == f"aws/{REGION}/ec2/{big[0]}"
    assert instance.kind == "ec2-instance"
    assert (instance.state, instance.instance_type) == (RUNNING, "p4d.24xlarge")
    assert instance.gpus == ("A100",) * 8
    assert instance.tags == {"team": "llm", "Name": "serving-1"}
    assert found[small[0]].gpus == ("A10G",)
    endpoint = found["chat"]
    assert (endpoint.kind, endpoint.state) == ("sagemaker-endpoint", RUNNING)
    assert endpoint.instance_type == "ml.g4dn.xlarge"
    assert endpoint.gpus == ("T4",) * 2
    assert endpoint.ref.endswith(":endpoint/chat")


def test_account_comes_from_sts(moto: MotoServer) -> None:
    assert provider(moto).account == "123456789012"


def test_stop_and_start_an_instance_with_its_marks(moto: MotoServer) -> None:
    [iid] = moto.gpu_instances(1)
    p = provider(moto)
    r = by_name(p)[iid]

    p.mark(r, {"backstop-hold-cor-1": "pause"})
    assert "StopInstances" in p.stop(r)

    assert moto.instance_state(iid) == "stopped"
    assert moto.instance_tags(iid)["backstop-hold-cor-1"] == "pause"
    stopped = by_name(p)[iid]
    assert stopped.state == STOPPED
    assert stopped.holds == {"cor-1": "pause"}

    p.unmark(stopped, ["backstop-hold-cor-1"])
    p.start(stopped)
    assert moto.instance_state(iid) == "running"
    assert "backstop-hold-cor-1" not in moto.instance_tags(iid)


def test_an_endpoint_is_scaled_to_zero_and_back_to_its_recorded_capacity(
    moto: MotoServer,
) -> None:
    moto.endpoint("chat", instances=3)
    p = provider(moto)

    assert "was 3" in p.stop(by_name(p)["chat"])
    assert moto.endpoint_capacity("chat") == 0
    stopped = by_name(p)["chat"]
    assert stopped.state == STOPPED
    assert stopped.tags[PREVIOUS_CAPACITY_TAG] == "main=3"

    p.stop(stopped)  # again: the recorded capacity is not overwritten by the zero
    assert by_name(p)["chat"].tags[PREVIOUS_CAPACITY_TAG] == "main=3"

    assert "back to 3" in p.start(by_name(p)["chat"])
    assert moto.endpoint_capacity("chat") == 3
    assert PREVIOUS_CAPACITY_TAG not in by_name(p)["chat"].tags


def test_an_aws_error_names_the_resource_and_the_cause(moto: MotoServer) -> None:
    [iid] = moto.gpu_instances(1)
    p = provider(moto)
    r = by_name(p)[iid]
    moto.client("ec2").terminate_instances(InstanceIds=[iid])
    gone = CloudResource(**{**_fields(r), "name": "i-00000000deadbeef"})

    with pytest.raises(ActuationError, match=r"stop aws/.*: InvalidInstanceID"):
        p.stop(gone)
    assert iid not in by_name(p)  # terminated instances are not listed


def _fields(r: CloudResource) -> dict[str, object]:
    return {name: getattr(r, name) for name in r.__slots__}  # type: ignore[attr-defined]


def test_an_instance_in_an_auto_scaling_group_goes_to_standby_before_it_stops(
    moto: MotoServer,
) -> None:
    """Stopped while in service, the group would terminate and replace it."""
    first, second = gpu_group(moto, "serving", desired=2, min_size=2)
    p = provider(moto)

    said = p.stop(by_name(p)[first])

    group = group_state(moto, "serving")
    assert "min size of serving 2 -> 1" in said
    assert (group["DesiredCapacity"], group["MinSize"]) == (1, 1)
    states = {i["InstanceId"]: i["LifecycleState"] for i in group["Instances"]}
    assert states == {first: "Standby", second: "InService"}  # no replacement launched
    assert moto.instance_state(first) == "stopped"
    p.stop(by_name(p)[second])
    group = group_state(moto, "serving")
    assert (group["DesiredCapacity"], group["MinSize"]) == (0, 0)
    assert {t["Key"]: t["Value"] for t in group["Tags"]}[PREVIOUS_MIN_SIZE_TAG] == "2"

    p.start(by_name(p)[first])
    said = p.start(by_name(p)[second])

    group = group_state(moto, "serving")
    assert "min size of serving back to 2" in said
    assert (group["DesiredCapacity"], group["MinSize"]) == (2, 2)
    assert {i["LifecycleState"] for i in group["Instances"]} == {"InService"}
    assert [moto.instance_state(i) for i in (first, second)] == ["running", "running"]
    assert PREVIOUS_MIN_SIZE_TAG not in {t["Key"] for t in group.get("Tags", [])}
