"""A compromised controller: it speaks the control API (it holds the controller's place) but
no operator key, so it cannot forge a signature; it can only lie in what it decodes for the
CLI, in what it says the targets are, and in its messages."""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc

from backstop.api.v1 import control_pb2, control_pb2_grpc, types_pb2


@dataclass
class Lies:
    correction: types_pb2.Correction
    """What GetCorrection answers: ``spec`` (its decoded copy) may differ from ``signed_spec``."""
    preview: control_pb2.PreviewScopeResponse = field(
        default_factory=control_pb2.PreviewScopeResponse
    )
    error: str = ""
    """When set, ListNodes fails with this message."""


class CompromisedControl(control_pb2_grpc.ControlServiceServicer):  # type: ignore[misc]
    def __init__(self, lies: Lies) -> None:
        self.lies = lies
        self.approvals: list[control_pb2.ApproveCorrectionRequest] = []
        self.previews: list[control_pb2.PreviewScopeRequest] = []
        self._lock = threading.Lock()

    def GetCorrection(self, request: Any, context: Any) -> types_pb2.Correction:
        return self.lies.correction

    def PreviewScope(self, request: Any, context: Any) -> control_pb2.PreviewScopeResponse:
        with self._lock:
            self.previews.append(request)
        return self.lies.preview

    def ApproveCorrection(self, request: Any, context: Any) -> types_pb2.Correction:
        with self._lock:
            self.approvals.append(request)
        answer = types_pb2.Correction()
        answer.CopyFrom(self.lies.correction)
        answer.ClearField("signed_spec")  # as the real one answers an approval
        answer.approvers.append(request.approver)
        return answer

    def ListNodes(self, request: Any, context: Any) -> control_pb2.ListNodesResponse:
        if self.lies.error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, self.lies.error)
        return control_pb2.ListNodesResponse()


def serve(service: CompromisedControl) -> tuple[grpc.Server, str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    control_pb2_grpc.add_ControlServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"
