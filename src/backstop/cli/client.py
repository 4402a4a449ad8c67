"""A synchronous client of the controller's control API, with Backstop errors.

gRPC failures become :mod:`backstop.core.errors` exceptions whose message says what to do.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc

from backstop.api.v1 import control_pb2, control_pb2_grpc, types_pb2
from backstop.core.errors import BackstopError, Conflict, InvalidInput, NotFound, Unavailable
from backstop.core.netaddr import require_loopback_for_plaintext

_CODES: dict[grpc.StatusCode, type[BackstopError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidInput,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: Conflict,
}


class ControllerClient:
    def __init__(self, address: str, timeout_s: float = 10.0) -> None:
        require_loopback_for_plaintext(address)
        self.address = address
        self.timeout_s = timeout_s
        self._channel = grpc.insecure_channel(address)
        self._stub = control_pb2_grpc.ControlServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> ControllerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _error(self, exc: grpc.RpcError) -> BackstopError:
        code = exc.code()
        details = exc.details() or code.name
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return Unavailable(
                f"cannot reach the controller at {self.address} ({details}); is "
                "`backstop controller serve` running? Set --controller or BACKSTOP_CONTROLLER."
            )
        return _CODES.get(code, BackstopError)(details)

    def _call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            raise self._error(exc) from exc

    def list_nodes(self) -> list[types_pb2.Node]:
        return list(self._call("ListNodes", control_pb2.ListNodesRequest()).nodes)

    def list_workloads(self, node_id: str = "") -> list[types_pb2.Workload]:
        request = control_pb2.ListWorkloadsRequest(node_id=node_id)
        return list(self._call("ListWorkloads", request).workloads)

    def list_corrections(self, limit: int = 0) -> list[types_pb2.Correction]:
        request = control_pb2.ListCorrectionsRequest(limit=limit)
        return list(self._call("ListCorrections", request).corrections)

    def create(self, request: control_pb2.CreateCorrectionRequest) -> types_pb2.Correction:
        correction: types_pb2.Correction = self._call("CreateCorrection", request)
        return correction

    def approve(self, correction_id: str, approver: str) -> types_pb2.Correction:
        request = control_pb2.ApproveCorrectionRequest(
            correction_id=correction_id, approver=approver
        )
        correction: types_pb2.Correction = self._call("ApproveCorrection", request)
        return correction

    def resume(self, correction_id: str, reason: str, issuer: str) -> types_pb2.Correction:
        request = control_pb2.ResumeCorrectionRequest(
            correction_id=correction_id, reason=reason, issuer=issuer
        )
        correction: types_pb2.Correction = self._call("ResumeCorrection", request)
        return correction

    def get(self, correction_id: str) -> types_pb2.Correction:
        request = control_pb2.GetCorrectionRequest(correction_id=correction_id)
        correction: types_pb2.Correction = self._call("GetCorrection", request)
        return correction

    def watch(self, correction_id: str, timeout_s: float) -> Iterator[types_pb2.Correction]:
        request = control_pb2.GetCorrectionRequest(correction_id=correction_id)
        try:
            yield from self._stub.WatchCorrection(request, timeout=timeout_s)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise Unavailable(
                    f"{correction_id} did not finish within {timeout_s:g} s; "
                    f"see `backstop status {correction_id}`"
                ) from exc
            raise self._error(exc) from exc
