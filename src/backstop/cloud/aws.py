"""AWS: EC2 instances with GPUs and SageMaker endpoints on GPU instances, through boto3.

- An EC2 instance counts when its type has GPUs (``DescribeInstanceTypes`` ``GpuInfo``; types
  are looked up once). ``stop`` is ``StopInstances``, ``start`` is ``StartInstances``.
- A SageMaker endpoint counts when its variants run on GPU instance types. ``stop`` records
  each variant's desired instance count in the tag ``backstop-previous-capacity`` and sets it
  to zero (``UpdateEndpointWeightsAndCapacities``); ``start`` puts the recorded counts back.
- An instance in an Auto Scaling group is put in Standby (desired capacity decremented) before
  it is stopped, so that the group neither marks it unhealthy and terminates it nor launches a
  replacement. Where the decrement would go below the group's minimum size, the minimum is
  lowered first and the old one recorded in the group's tag ``backstop-previous-min-size``.
  ``start`` starts the instance, waits until it runs, takes it out of Standby, and restores the
  minimum once no instance of the group is left in Standby.
- Hold marks are tags. Errors from AWS become :class:`ActuationError` with the AWS message.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from backstop.cloud.resources import (
    GONE,
    RUNNING,
    STARTING,
    STOPPED,
    STOPPING,
    CloudResource,
)
from backstop.core.errors import ActuationError, Unavailable

PREVIOUS_CAPACITY_TAG = "backstop-previous-capacity"
PREVIOUS_MIN_SIZE_TAG = "backstop-previous-min-size"
GROUP_TAG = "aws:autoscaling:groupName"
RUNNING_WAIT = {"Delay": 5, "MaxAttempts": 60}
EC2 = "ec2-instance"
SAGEMAKER = "sagemaker-endpoint"
_EC2_STATES = {
    "pending": STARTING,
    "running": RUNNING,
    "stopping": STOPPING,
    "shutting-down": STOPPING,
    "stopped": STOPPED,
    "terminated": GONE,
}


def _aws_error(what: str, exc: Exception) -> ActuationError:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return ActuationError(f"{what}: {error.get('Code', '?')}: {error.get('Message', exc)}")
    return ActuationError(f"{what}: {exc}")


def _tags(items: Sequence[Mapping[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in items or ()}


def _lifecycles(group: Mapping[str, Any]) -> dict[str, str]:
    """Instance id -> lifecycle state (InService, Standby, ...) in an Auto Scaling group."""
    return {i["InstanceId"]: i["LifecycleState"] for i in group.get("Instances", ())}


def _group_tag(group: str, value: str) -> dict[str, object]:
    return {
        "ResourceId": group,
        "ResourceType": "auto-scaling-group",
        "Key": PREVIOUS_MIN_SIZE_TAG,
        "Value": value,
        "PropagateAtLaunch": False,
    }


def _timestamp(value: object) -> float:
    return value.timestamp() if isinstance(value, dt.datetime) else 0.0


def _capacity(text: str) -> dict[str, int]:
    """``v1=2,v2=1`` -> ``{"v1": 2, "v2": 1}``."""
    counts = {}
    for part in filter(None, text.split(",")):
        name, _, count = part.partition("=")
        counts[name] = int(count)
    return counts


class AwsProvider:
    """One AWS account, in the given regions."""

    name = "aws"

    def __init__(
        self,
        regions: Sequence[str],
        *,
        endpoint_url: str = "",
        session: boto3.Session | None = None,
    ) -> None:
        if not regions:
            raise ValueError("at least one region")
        self._session = session or boto3.Session()
        self._endpoint = endpoint_url or None
        self._config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5)
        self._clients: dict[tuple[str, str], Any] = {}
        self._gpu_types: dict[str, tuple[str, ...]] = {}
        self._variant_types: dict[str, dict[str, str]] = {}
        """Endpoint config -> variant -> instance type (configs never change once made)."""
        self.regions = tuple(regions)
        try:
            identity = self._client("sts", self.regions[0]).get_caller_identity()
        except (ClientError, BotoCoreError) as exc:
            raise Unavailable(f"cannot reach AWS STS to learn the account: {exc}") from exc
        self.account = str(identity["Account"])

    def _client(self, service: str, region: str) -> Any:
        key = (service, region)
        if key not in self._clients:
            self._clients[key] = self._session.client(
                service, region_name=region, endpoint_url=self._endpoint, config=self._config
            )
        return self._clients[key]

    # -- inventory ------------------------------------------------------------------------

    def resources(self) -> list[CloudResource]:
        found: list[CloudResource] = []
        for region in self.regions:
            try:
                found.extend(self._instances(region))
                found.extend(self._endpoints(region))
            except (ClientError, BotoCoreError) as exc:
                raise Unavailable(f"cannot list {region}: {_aws_error('list', exc)}") from exc
        return found

    def _gpus_of(self, region: str, types: set[str]) -> None:
        """Look up the GPUs of instance types not seen before."""
        unknown = sorted(t for t in types if t not in self._gpu_types)
        for start in range(0, len(unknown), 100):
            page = unknown[start : start + 100]
            reply = self._client("ec2", region).describe_instance_types(InstanceTypes=page)
            for info in reply.get("InstanceTypes", ()):
                gpus: list[str] = []
                for gpu in (info.get("GpuInfo") or {}).get("Gpus", ()):
                    gpus += [str(gpu.get("Name", "GPU"))] * int(gpu.get("Count", 0))
                self._gpu_types[info["InstanceType"]] = tuple(gpus)
            for name in page:
                self._gpu_types.setdefault(name, ())

    def _instances(self, region: str) -> Iterator[CloudResource]:
        ec2 = self._client("ec2", region)
        instances = [
            i
            for page in ec2.get_paginator("describe_instances").paginate()
            for reservation in page.get("Reservations", ())
            for i in reservation.get("Instances", ())
        ]
        self._gpus_of(region, {i["InstanceType"] for i in instances})
        for i in instances:
            gpus = self._gpu_types.get(i["InstanceType"], ())
            state = _EC2_STATES.get(i["State"]["Name"], RUNNING)
            if not gpus or state == GONE:
                continue
            yield CloudResource(
                workload_id=f"aws/{region}/ec2/{i['InstanceId']}",
                kind=EC2,
                name=i["InstanceId"],
                location=region,
                state=state,
                instance_type=i["InstanceType"],
                gpus=gpus,
                tags=_tags(i.get("Tags")),
                created_at_s=_timestamp(i.get("LaunchTime")),
            )

    def _endpoints(self, region: str) -> Iterator[CloudResource]:
        sm = self._client("sagemaker", region)
        for page in sm.get_paginator("list_endpoints").paginate():
            for summary in page.get("Endpoints", ()):
                endpoint = sm.describe_endpoint(EndpointName=summary["EndpointName"])
                types = self._types_of_variants(sm, endpoint["EndpointConfigName"])
                self._gpus_of(region, {t.removeprefix("ml.") for t in types.values() if t})
                per_instance = {
                    name: self._gpu_types.get(t.removeprefix("ml."), ())
                    for name, t in types.items()
                }
                if not any(per_instance.values()):
                    continue  # CPU-only or serverless: not GPU capacity
                gpus: list[str] = []
                desired = 0
                for variant in endpoint.get("ProductionVariants", ()):
                    count = int(variant.get("DesiredInstanceCount", 0))
                    gpus += list(per_instance.get(variant["VariantName"], ())) * count
                    desired += count
                yield CloudResource(
                    workload_id=f"aws/{region}/sagemaker/{endpoint['EndpointName']}",
                    kind=SAGEMAKER,
                    name=endpoint["EndpointName"],
                    location=region,
                    state=RUNNING if desired else STOPPED,
                    instance_type=",".join(sorted(set(types.values()))),
                    gpus=tuple(gpus),
                    tags=_tags(sm.list_tags(ResourceArn=endpoint["EndpointArn"]).get("Tags")),
                    created_at_s=_timestamp(endpoint.get("CreationTime")),
                    ref=endpoint["EndpointArn"],
                )

    def _types_of_variants(self, sm: Any, config_name: str) -> dict[str, str]:
        if config_name not in self._variant_types:
            config = sm.describe_endpoint_config(EndpointConfigName=config_name)
            self._variant_types[config_name] = {
                v["VariantName"]: v.get("InstanceType", "")
                for v in config.get("ProductionVariants", ())
            }
        return self._variant_types[config_name]

    # -- marks ----------------------------------------------------------------------------

    def mark(self, resource: CloudResource, marks: Mapping[str, str]) -> None:
        tags = [{"Key": k, "Value": v} for k, v in marks.items()]
        try:
            if resource.kind == EC2:
                self._client("ec2", resource.location).create_tags(
                    Resources=[resource.name], Tags=tags
                )
            else:
                self._client("sagemaker", resource.location).add_tags(
                    ResourceArn=resource.ref, Tags=tags
                )
        except (ClientError, BotoCoreError) as exc:
            raise _aws_error(f"tag {resource.workload_id}", exc) from exc

    def unmark(self, resource: CloudResource, keys: Sequence[str]) -> None:
        try:
            if resource.kind == EC2:
                self._client("ec2", resource.location).delete_tags(
                    Resources=[resource.name], Tags=[{"Key": k} for k in keys]
                )
            else:
                self._client("sagemaker", resource.location).delete_tags(
                    ResourceArn=resource.ref, TagKeys=list(keys)
                )
        except (ClientError, BotoCoreError) as exc:
            raise _aws_error(f"untag {resource.workload_id}", exc) from exc

    # -- actions --------------------------------------------------------------------------

    def stop(self, resource: CloudResource) -> str:
        try:
            if resource.kind != EC2:
                return self._scale_endpoint_to_zero(resource)
            group = resource.tags.get(GROUP_TAG, "")
            standby = self._enter_standby(resource, group) if group else ""
            self._client("ec2", resource.location).stop_instances(InstanceIds=[resource.name])
        except (ClientError, BotoCoreError) as exc:
            raise _aws_error(f"stop {resource.workload_id}", exc) from exc
        return f"{standby}StopInstances {resource.name} (was {resource.state})"

    def _group(self, region: str, group: str) -> dict[str, Any]:
        reply = self._client("autoscaling", region).describe_auto_scaling_groups(
            AutoScalingGroupNames=[group]
        )
        groups = reply.get("AutoScalingGroups") or []
        if not groups:
            raise ActuationError(f"Auto Scaling group {group} not found")
        return dict(groups[0])

    def _enter_standby(self, resource: CloudResource, group: str) -> str:
        """Take the instance out of its group's care without a replacement; what was done."""
        asg = self._client("autoscaling", resource.location)
        g = self._group(resource.location, group)
        if _lifecycles(g).get(resource.name) != "InService":
            return ""
        said = ""
        if g["DesiredCapacity"] - 1 < g["MinSize"]:
            if PREVIOUS_MIN_SIZE_TAG not in _tags(g.get("Tags")):
                asg.create_or_update_tags(Tags=[_group_tag(group, str(g["MinSize"]))])
            asg.update_auto_scaling_group(
                AutoScalingGroupName=group, MinSize=g["DesiredCapacity"] - 1
            )
            said = f"min size of {group} {g['MinSize']} -> {g['DesiredCapacity'] - 1}; "
        asg.enter_standby(
            InstanceIds=[resource.name],
            AutoScalingGroupName=group,
            ShouldDecrementDesiredCapacity=True,
        )
        return f"{said}Standby in {group}; "

    def _exit_standby(self, resource: CloudResource, group: str) -> str:
        asg = self._client("autoscaling", resource.location)
        ec2 = self._client("ec2", resource.location)
        ec2.get_waiter("instance_running").wait(
            InstanceIds=[resource.name], WaiterConfig=RUNNING_WAIT
        )
        g = self._group(resource.location, group)
        lifecycle = _lifecycles(g)
        said = ""
        if lifecycle.get(resource.name) == "Standby":
            asg.exit_standby(InstanceIds=[resource.name], AutoScalingGroupName=group)
            lifecycle[resource.name] = "InService"
            said = f"; back in service in {group}"
        previous = _tags(g.get("Tags")).get(PREVIOUS_MIN_SIZE_TAG)
        if previous is not None and "Standby" not in lifecycle.values():
            asg.update_auto_scaling_group(AutoScalingGroupName=group, MinSize=int(previous))
            asg.delete_tags(Tags=[_group_tag(group, previous)])
            said += f"; min size of {group} back to {previous}"
        return said

    def _scale_endpoint_to_zero(self, resource: CloudResource) -> str:
        sm = self._client("sagemaker", resource.location)
        endpoint = sm.describe_endpoint(EndpointName=resource.name)
        counts = {
            v["VariantName"]: int(v.get("DesiredInstanceCount", 0))
            for v in endpoint.get("ProductionVariants", ())
        }
        if PREVIOUS_CAPACITY_TAG not in resource.tags and any(counts.values()):
            previous = ",".join(f"{k}={v}" for k, v in sorted(counts.items()))
            self.mark(resource, {PREVIOUS_CAPACITY_TAG: previous})
        sm.update_endpoint_weights_and_capacities(
            EndpointName=resource.name,
            DesiredWeightsAndCapacities=[
                {"VariantName": name, "DesiredInstanceCount": 0} for name in counts
            ],
        )
        return f"scaled {resource.name} to 0 instances (was {sum(counts.values())})"

    def start(self, resource: CloudResource) -> str:
        try:
            if resource.kind == EC2:
                self._client("ec2", resource.location).start_instances(InstanceIds=[resource.name])
                group = resource.tags.get(GROUP_TAG, "")
                standby = self._exit_standby(resource, group) if group else ""
                return f"StartInstances {resource.name}{standby}"
            previous = _capacity(resource.tags.get(PREVIOUS_CAPACITY_TAG, ""))
            if not previous:
                return f"no recorded capacity for {resource.name}; left as it is"
            self._client("sagemaker", resource.location).update_endpoint_weights_and_capacities(
                EndpointName=resource.name,
                DesiredWeightsAndCapacities=[
                    {"VariantName": name, "DesiredInstanceCount": count}
                    for name, count in sorted(previous.items())
                ],
            )
            self.unmark(resource, [PREVIOUS_CAPACITY_TAG])
            return f"scaled {resource.name} back to {sum(previous.values())} instances"
        except (ClientError, BotoCoreError) as exc:
            raise _aws_error(f"start {resource.workload_id}", exc) from exc
