"""A local HTTP server that speaks the Compute Engine REST shapes the cloud agent uses.

No GCE emulator exists, so this is the boundary double: google-cloud-compute's real REST
client (``transport="rest"``, anonymous credentials, ``api_endpoint`` pointed here) talks to
it over real HTTP. It implements instances ``list``/``get``/``stop``/``start``/``setLabels``
(with the label fingerprint precondition, 412 when stale) and zone operations ``get``/``wait``.
Operations are answered RUNNING and are DONE when next read, so clients must wait. Tests
read and change the instances directly, and can make the next N ``setLabels`` calls meet a
concurrent label change.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

PREFIX = "/compute/v1/projects/"
_ROUTE = re.compile(
    r"^/compute/v1/projects/(?P<project>[^/]+)/zones/(?P<zone>[^/]+)/"
    r"(?P<collection>instances|operations|instanceGroupManagers)(?:/(?P<name>[^/]+))?"
    r"(?:/(?P<verb>[A-Za-z]+))?$"
)


def _fingerprint(labels: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class FakeGce:
    project: str = "lab-project"
    instances: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)
    """Group members stopped directly, which their group then started again (autohealing)."""
    label_races: int = 0
    """Make this many coming ``setLabels`` calls find the labels changed by someone else."""
    url: str = ""
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1000))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(
        self,
        name: str,
        zone: str = "us-central1-a",
        machine_type: str = "a2-highgpu-8g",
        accelerators: tuple[tuple[str, int], ...] = (("nvidia-tesla-a100", 8),),
        status: str = "RUNNING",
        labels: dict[str, str] | None = None,
        group: str = "",
    ) -> None:
        """An instance; ``group``: the zonal managed instance group it belongs to."""
        base = f"https://compute.googleapis.com{PREFIX}{self.project}/zones/{zone}"
        labels = dict(labels or {})
        self.instances[(zone, name)] = {
            "kind": "compute#instance",
            "id": str(next(self._ids)),
            "name": name,
            "zone": base,
            "machineType": f"{base}/machineTypes/{machine_type}",
            "status": status,
            "labels": labels,
            "labelFingerprint": _fingerprint(labels),
            "guestAccelerators": [
                {"acceleratorType": f"{base}/acceleratorTypes/{kind}", "acceleratorCount": n}
                for kind, n in accelerators
            ],
            "creationTimestamp": "2026-11-01T08:00:00.000-07:00",
            "metadata": {
                "items": [
                    {
                        "key": "created-by",
                        "value": f"projects/1234/zones/{zone}/instanceGroupManagers/{group}",
                    }
                ]
                if group
                else []
            },
            "selfLink": f"{base}/instances/{name}",
        }

    def status(self, name: str, zone: str = "us-central1-a") -> str:
        return str(self.instances[(zone, name)]["status"])

    def labels(self, name: str, zone: str = "us-central1-a") -> dict[str, str]:
        return dict(self.instances[(zone, name)]["labels"])

    def set_status(self, name: str, status: str, zone: str = "us-central1-a") -> None:
        with self.lock:
            self.instances[(zone, name)]["status"] = status

    # -- the API ------------------------------------------------------------------------

    def handle(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        match = _ROUTE.match(path.split("?", 1)[0])
        if not match:
            return 404, _error(404, f"no route {path}")
        project, zone = match["project"], match["zone"]
        collection, name, verb = match["collection"], match["name"], match["verb"]
        self.calls.append(f"{method} {collection}{'/' + verb if verb else ''} {name or ''}".strip())
        if project != self.project:
            return 404, _error(404, f"project {project} not found")
        with self.lock:
            if collection == "operations":  # get or wait: the operation is done by now
                op = self.operations.get(name or "")
                if op is None:
                    return 404, _error(404, f"operation {name} not found")
                op.update(status="DONE", progress=100)
                return 200, op
            if collection == "instanceGroupManagers":
                return self._group_members(zone, name or "", verb or "", body)
            if name is None:
                items = [i for (z, _), i in sorted(self.instances.items()) if z == zone]
                return 200, {"kind": "compute#instanceList", "items": items}
            instance = self.instances.get((zone, name))
            if instance is None:
                return 404, _error(404, f"instance {name} not found")
            if method == "GET" and verb is None:
                return 200, instance
            if verb == "stop":
                if _group_of(instance):  # the group repairs a member stopped behind its back
                    self.repairs.append(name)
                elif instance["status"] in ("RUNNING", "PROVISIONING", "STAGING"):
                    instance["status"] = "TERMINATED"
                return 200, self._operation(zone, "stop", instance)
            if verb == "start":
                if instance["status"] in ("STOPPING", "SUSPENDING"):
                    message = f"The resource '{instance['selfLink']}' is not ready"
                    return 400, _error(400, message, "resourceNotReady")
                if instance["status"] == "TERMINATED":
                    instance["status"] = "RUNNING"
                return 200, self._operation(zone, "start", instance)
            if verb == "setLabels":
                if self.label_races > 0:
                    self.label_races -= 1
                    change = {"touched-by": f"someone-else-{self.label_races}"}
                    instance["labels"] = {**instance["labels"], **change}
                    instance["labelFingerprint"] = _fingerprint(instance["labels"])
                if body.get("labelFingerprint") != instance["labelFingerprint"]:
                    return 412, _error(
                        412,
                        "Labels fingerprint either invalid or resource labels have changed",
                        "conditionNotMet",
                    )
                instance["labels"] = dict(body.get("labels") or {})
                instance["labelFingerprint"] = _fingerprint(instance["labels"])
                return 200, self._operation(zone, "setLabels", instance)
        return 400, _error(400, f"unsupported {method} {path}")

    def _group_members(
        self, zone: str, group: str, verb: str, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        """``stopInstances``/``startInstances`` of a zonal managed instance group."""
        if verb not in ("stopInstances", "startInstances"):
            return 400, _error(400, f"unsupported group method {verb}")
        members = []
        for url in body.get("instances") or []:
            instance = self.instances.get((zone, url.rsplit("/", 1)[-1]))
            if instance is None or _group_of(instance) != group:
                return 400, _error(400, f"{url} is not a member of {group}", "invalid")
            members.append(instance)
        for instance in members:
            instance["status"] = "TERMINATED" if verb == "stopInstances" else "RUNNING"
        target = {"zone": members[0]["zone"] if members else zone, "selfLink": group}
        return 200, self._operation(zone, verb, target)

    def _operation(self, zone: str, kind: str, instance: dict[str, Any]) -> dict[str, Any]:
        name = f"operation-{next(self._ids)}"
        op = {
            "kind": "compute#operation",
            "id": str(next(self._ids)),
            "name": name,
            "zone": instance["zone"],
            "operationType": kind,
            "targetLink": instance["selfLink"],
            "status": "RUNNING",
            "progress": 0,
        }
        self.operations[name] = op
        return op


def _group_of(instance: dict[str, Any]) -> str:
    for item in instance["metadata"]["items"]:
        if item["key"] == "created-by":
            return str(item["value"]).rsplit("/", 1)[-1]
    return ""


def _error(code: int, message: str, reason: str = "notFound") -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "errors": [{"message": message, "reason": reason}],
        }
    }


class _Handler(BaseHTTPRequestHandler):
    fake: FakeGce

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else {}
        code, reply = self.fake.handle(method, self.path, body)
        data = json.dumps(reply).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def gce() -> Iterator[FakeGce]:
    fake = FakeGce()
    handler = type("Handler", (_Handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
