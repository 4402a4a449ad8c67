"""GCP: Compute Engine instances with GPUs, through google-cloud-compute (REST transport).

- An instance counts when it has guest accelerators, or a machine type whose GPUs are built
  in (A2, A3, A4, G2, G4 families).
- ``stop`` and ``start`` are the instance methods of those names; each returns a zone
  operation, which is waited for (``ZoneOperationsClient.wait``) and checked for errors. A
  stop discards local SSD contents: the docs say so, and the hold is what keeps it stopped.
- An instance of a zonal managed instance group (metadata ``created-by``) is stopped and
  started through its group (``instanceGroupManagers.stopInstances``/``startInstances``), which
  keeps it in the group's stopped pool; stopped directly, the group would repair it (restart
  or recreate it). Instances of regional groups are refused with a message saying so.
- Hold marks are labels. ``setLabels`` replaces all labels and is conditional on the label
  fingerprint; a stale fingerprint (412) is met by reading the instance again.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import compute_v1

from backstop.cloud.resources import RUNNING, STARTING, STOPPED, STOPPING, CloudResource
from backstop.core.errors import ActuationError, Unavailable

GCE = "gce-instance"
BUILT_IN_GPU_FAMILIES = ("a2-", "a3-", "a4-", "g2-", "g4-")
OPERATION_TIMEOUT_S = 300.0
LABEL_RETRIES = 5
_STATES = {
    "PROVISIONING": STARTING,
    "STAGING": STARTING,
    "RUNNING": RUNNING,
    "REPAIRING": RUNNING,
    "STOPPING": STOPPING,
    "SUSPENDING": STOPPING,
    "TERMINATED": STOPPED,
    "SUSPENDED": STOPPED,
}


def _last_segment(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def _created(stamp: str) -> float:
    try:
        return dt.datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return 0.0


def _gpus(instance: compute_v1.Instance) -> tuple[str, ...]:
    gpus: list[str] = []
    for accelerator in instance.guest_accelerators:
        gpus += [_last_segment(accelerator.accelerator_type)] * accelerator.accelerator_count
    if not gpus and _last_segment(instance.machine_type).startswith(BUILT_IN_GPU_FAMILIES):
        gpus = ["GPU"]
    return tuple(gpus)


class GcpProvider:
    """One GCP project, in the given zones."""

    name = "gcp"

    def __init__(
        self,
        project: str,
        zones: Sequence[str],
        *,
        endpoint_url: str = "",
        credentials: Credentials | None = None,
    ) -> None:
        if not zones:
            raise ValueError("at least one zone")
        self.account = project
        self.zones = tuple(zones)
        options = ClientOptions(api_endpoint=endpoint_url) if endpoint_url else None
        if endpoint_url and credentials is None:
            credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
        # the operations client is built with the same options, so waits go where calls go
        self._instances = compute_v1.InstancesClient(
            credentials=credentials, transport="rest", client_options=options
        )
        self._operations = compute_v1.ZoneOperationsClient(
            credentials=credentials, transport="rest", client_options=options
        )
        self._groups = compute_v1.InstanceGroupManagersClient(
            credentials=credentials, transport="rest", client_options=options
        )

    def _call(self, what: str, fn: Callable[..., Any], **kw: Any) -> Any:
        try:
            return fn(**kw)
        except gexc.GoogleAPICallError as exc:
            raise ActuationError(f"{what}: {exc.message or exc}") from exc

    def resources(self) -> list[CloudResource]:
        found: list[CloudResource] = []
        for zone in self.zones:
            try:
                found.extend(self._zone(zone))
            except gexc.GoogleAPICallError as exc:
                raise Unavailable(f"cannot list instances in {zone}: {exc.message}") from exc
        return found

    def _zone(self, zone: str) -> Iterator[CloudResource]:
        for instance in self._instances.list(project=self.account, zone=zone):
            gpus = _gpus(instance)
            if gpus:
                yield self._resource(zone, instance, gpus)

    def _resource(
        self, zone: str, instance: compute_v1.Instance, gpus: tuple[str, ...]
    ) -> CloudResource:
        return CloudResource(
            workload_id=f"gcp/{zone}/gce/{instance.name}",
            kind=GCE,
            name=instance.name,
            location=zone,
            state=_STATES.get(instance.status, RUNNING),
            instance_type=_last_segment(instance.machine_type),
            gpus=gpus,
            tags=dict(instance.labels),
            created_at_s=_created(instance.creation_timestamp),
            ref=instance.label_fingerprint,
            group=next((i.value for i in instance.metadata.items if i.key == "created-by"), ""),
        )

    def _wait(self, what: str, zone: str, operation: compute_v1.Operation) -> None:
        """Wait for a zone operation to finish; raise its error, if it has one."""
        done = operation
        deadline = time.monotonic() + OPERATION_TIMEOUT_S
        while done.status != compute_v1.Operation.Status.DONE:
            if time.monotonic() > deadline:
                raise ActuationError(f"{what}: operation {operation.name} still running")
            done = self._call(
                what,
                self._operations.wait,
                project=self.account,
                zone=zone,
                operation=operation.name,
            )
        if done.error and done.error.errors:
            messages = "; ".join(e.message for e in done.error.errors)
            raise ActuationError(f"{what}: {messages}")

    def _set_labels(self, r: CloudResource, change: Callable[[dict[str, str]], None]) -> None:
        labels, fingerprint = dict(r.tags), r.ref
        for _ in range(LABEL_RETRIES):
            change(labels)
            request = compute_v1.InstancesSetLabelsRequest(
                labels=labels, label_fingerprint=fingerprint
            )
            try:
                operation = self._instances.set_labels_unary(
                    project=self.account,
                    zone=r.location,
                    instance=r.name,
                    instances_set_labels_request_resource=request,
                )
            except gexc.PreconditionFailed:
                fresh = self._call(
                    f"read {r.workload_id}",
                    self._instances.get,
                    project=self.account,
                    zone=r.location,
                    instance=r.name,
                )
                labels, fingerprint = dict(fresh.labels), fresh.label_fingerprint
                continue
            except gexc.GoogleAPICallError as exc:
                raise ActuationError(f"label {r.workload_id}: {exc.message}") from exc
            self._wait(f"label {r.workload_id}", r.location, operation)
            return
        raise ActuationError(f"label {r.workload_id}: its labels kept changing")

    def mark(self, resource: CloudResource, marks: Mapping[str, str]) -> None:
        self._set_labels(resource, lambda labels: labels.update(marks))

    def unmark(self, resource: CloudResource, keys: Sequence[str]) -> None:
        def drop(labels: dict[str, str]) -> None:
            for key in keys:
                labels.pop(key, None)

        self._set_labels(resource, drop)

    def _instance_method(self, verb: str, resource: CloudResource) -> str:
        """``instances.<verb>`` on ``resource`` (through its group, if it has one), waiting for
        the zone operation; what was called."""
        what = f"{verb} {resource.workload_id}"
        zone, name = resource.location, resource.name
        if resource.group:
            group = _zonal_group(resource)
            methods: dict[str, Callable[..., Any]] = {
                "stop": self._groups.stop_instances_unary,
                "start": self._groups.start_instances_unary,
            }
            members = {
                f"instance_group_managers_{verb}_instances_request_resource": {
                    "instances": [f"zones/{zone}/instances/{name}"]
                }
            }
            operation = self._call(
                what,
                methods[verb],
                project=self.account,
                zone=zone,
                instance_group_manager=group,
                **members,
            )
            said = f"instanceGroupManagers.{verb}Instances {group}/{name}"
        else:
            method = self._instances.stop_unary if verb == "stop" else self._instances.start_unary
            operation = self._call(what, method, project=self.account, zone=zone, instance=name)
            said = f"instances.{verb} {name}"
        self._wait(what, zone, operation)
        return said

    def stop(self, resource: CloudResource) -> str:
        return f"{self._instance_method('stop', resource)} (was {resource.state})"

    def start(self, resource: CloudResource) -> str:
        return self._instance_method("start", resource)


def _zonal_group(resource: CloudResource) -> str:
    """The name of the zonal instance group managing ``resource``; regional ones are refused."""
    parts = resource.group.strip("/").split("/")
    if len(parts) >= 2 and parts[-2] == "instanceGroupManagers" and "zones" in parts:
        return parts[-1]
    raise ActuationError(
        f"{resource.workload_id} belongs to {resource.group}: instances of regional managed "
        "instance groups are not stopped yet (the group would repair them); act on the group"
    )
