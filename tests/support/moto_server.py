"""moto in server mode: a real HTTP process speaking the AWS APIs, for boto3 to be pointed at."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support.spawn import dying_with_parent

REGION = "us-east-1"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
}


class MotoServer:
    def __init__(self, url: str) -> None:
        self.url = url

    def reset(self) -> None:
        """Forget every resource (between tests)."""
        request = urllib.request.Request(  # noqa: S310 - loopback http only
            f"{self.url}/moto-api/reset", method="POST"
        )
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - loopback
            pass

    def client(self, service: str, region: str = REGION) -> Any:
        return boto3.client(
            service,
            region_name=region,
            endpoint_url=self.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def gpu_instances(
        self, count: int, instance_type: str = "p4d.24xlarge", **tags: str
    ) -> list[str]:
        ec2 = self.client("ec2")
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        tag_spec = [
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ]
        reply = ec2.run_instances(
            ImageId=image,
            MinCount=count,
            MaxCount=count,
            InstanceType=instance_type,
            **({"TagSpecifications": tag_spec} if tags else {}),
        )
        return [i["InstanceId"] for i in reply["Instances"]]

    def instance_state(self, instance_id: str) -> str:
        reply = self.client("ec2").describe_instances(InstanceIds=[instance_id])
        return str(reply["Reservations"][0]["Instances"][0]["State"]["Name"])

    def instance_tags(self, instance_id: str) -> dict[str, str]:
        reply = self.client("ec2").describe_instances(InstanceIds=[instance_id])
        tags = reply["Reservations"][0]["Instances"][0].get("Tags", [])
        return {t["Key"]: t["Value"] for t in tags}

    def endpoint(self, name: str, instances: int, instance_type: str = "ml.g4dn.xlarge") -> None:
        sm = self.client("sagemaker")
        sm.create_model(
            ModelName=f"{name}-model",
            ExecutionRoleArn="arn:aws:iam::123456789012:role/serving",
            PrimaryContainer={"Image": "serving:latest"},
        )
        sm.create_endpoint_config(
            EndpointConfigName=f"{name}-config",
            ProductionVariants=[
                {
                    "VariantName": "main",
                    "ModelName": f"{name}-model",
                    "InitialInstanceCount": instances,
                    "InstanceType": instance_type,
                }
            ],
        )
        sm.create_endpoint(EndpointName=name, EndpointConfigName=f"{name}-config")

    def endpoint_capacity(self, name: str) -> int:
        reply = self.client("sagemaker").describe_endpoint(EndpointName=name)
        return sum(int(v["DesiredInstanceCount"]) for v in reply["ProductionVariants"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def moto_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    binary = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            dying_with_parent([binary, "-H", "127.0.0.1", "-p", str(port)]),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **CREDENTIALS},
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):  # noqa: S310 - loopback
                break
        except OSError:
            assert proc.poll() is None, f"moto_server exited: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "moto_server did not start in 30 s"
            time.sleep(0.1)
    try:
        yield MotoServer(url)
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def moto(moto_process: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """The moto server, emptied, with fake credentials in the environment."""
    moto_process.reset()
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    return moto_process


def gpu_group(server: MotoServer, name: str, desired: int, min_size: int) -> list[str]:
    """An Auto Scaling group of GPU instances; the ids of its instances."""
    ec2 = server.client("ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ec2.create_launch_template(
        LaunchTemplateName=f"{name}-template",
        LaunchTemplateData={"ImageId": image, "InstanceType": "p5.48xlarge"},
    )
    asg = server.client("autoscaling")
    asg.create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateName": f"{name}-template"},
        MinSize=min_size,
        MaxSize=desired + 2,
        DesiredCapacity=desired,
        AvailabilityZones=["us-east-1a"],
    )
    return [i["InstanceId"] for i in group_state(server, name)["Instances"]]


def group_state(server: MotoServer, name: str) -> dict[str, Any]:
    reply = server.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])
    return dict(reply["AutoScalingGroups"][0])
