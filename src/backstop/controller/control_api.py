"""The control API (CLI, operator): listings, corrections, approvals, watching.

Backstop errors map to gRPC status codes in one place (:func:`status_for`), so every client
sees INVALID_ARGUMENT for bad input, NOT_FOUND for unknown ids, FAILED_PRECONDITION for
conflicts and UNAVAILABLE for temporary failures, each with a message that says what to do.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from backstop.api.v1 import control_pb2, control_pb2_grpc, types_pb2
from backstop.controller.corrections import CorrectionsEngine, CreateRequest
from backstop.controller.store.base import Store
from backstop.core.errors import BackstopError, Conflict, InvalidInput, NotFound
from backstop.core.models import Action
from backstop.wire import convert

log = logging.getLogger(__name__)

DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 10_000

T = TypeVar("T")


def status_for(exc: BackstopError) -> grpc.StatusCode:
    if isinstance(exc, InvalidInput):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, NotFound):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(exc, Conflict):
        return grpc.StatusCode.FAILED_PRECONDITION
    if exc.temporary:
        return grpc.StatusCode.UNAVAILABLE
    return grpc.StatusCode.INTERNAL


def _rpc(
    method: Callable[..., Awaitable[T]],
) -> Callable[..., Awaitable[T]]:
    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: Any) -> T:
        try:
            return await method(self, request, context)
        except BackstopError as exc:
            await context.abort(status_for(exc), exc.message)
            raise  # abort raises; this line only satisfies the type checker

    return wrapper


class ControlService(control_pb2_grpc.ControlServiceServicer):  # type: ignore[misc]
    def __init__(self, store: Store, engine: CorrectionsEngine) -> None:
        self._store = store
        self._engine = engine

    @_rpc
    async def ListNodes(self, request: Any, context: Any) -> control_pb2.ListNodesResponse:
        nodes = [
            convert.node_to_pb(
                r.info,
                connected=self._engine.connected(r.info.node_id),
                last_seen_s=r.last_seen_s,
                workload_count=r.workload_count,
            )
            for r in self._store.list_nodes()
        ]
        return control_pb2.ListNodesResponse(nodes=nodes)

    @_rpc
    async def ListWorkloads(
        self, request: control_pb2.ListWorkloadsRequest, context: Any
    ) -> control_pb2.ListWorkloadsResponse:
        if request.node_id and self._store.get_node(request.node_id) is None:
            raise NotFound(f"unknown node {request.node_id!r}; see `backstop nodes`")
        workloads = self._store.list_workloads(request.node_id)
        return control_pb2.ListWorkloadsResponse(
            workloads=[convert.workload_to_pb(w) for w in workloads]
        )

    @_rpc
    async def ListCorrections(
        self, request: control_pb2.ListCorrectionsRequest, context: Any
    ) -> control_pb2.ListCorrectionsResponse:
        limit = min(request.limit or DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)
        return control_pb2.ListCorrectionsResponse(
            corrections=[convert.correction_to_pb(c) for c in self._store.list_corrections(limit)]
        )

    @_rpc
    async def CreateCorrection(
        self, request: control_pb2.CreateCorrectionRequest, context: Any
    ) -> types_pb2.Correction:
        action = convert.action_from_pb(request.action)
        if request.ttl_s < 0:
            raise InvalidInput("ttl must not be negative")
        correction = self._engine.create(
            CreateRequest(
                action=action,
                scope=convert.scope_from_pb(request.scope),
                reason=request.reason,
                issuer=request.issuer,
                ttl_s=request.ttl_s,
                params=convert.params_from_pb(request.params),
            )
        )
        return convert.correction_to_pb(correction)

    @_rpc
    async def ApproveCorrection(
        self, request: control_pb2.ApproveCorrectionRequest, context: Any
    ) -> types_pb2.Correction:
        correction = self._engine.get(request.correction_id)
        if correction.spec.action is Action.RESUME or not correction.spec.action.severe:
            raise Conflict(
                f"{request.correction_id} needs no approval; it was approved at creation"
            )
        raise Conflict(
            f"{request.correction_id} was approved at creation: quorum approval of severe "
            "actions is not enabled on this controller"
        )

    @_rpc
    async def ResumeCorrection(
        self, request: control_pb2.ResumeCorrectionRequest, context: Any
    ) -> types_pb2.Correction:
        if not request.issuer:
            raise InvalidInput("the issuer is missing")
        correction = self._engine.resume(request.correction_id, request.reason, request.issuer)
        return convert.correction_to_pb(correction)

    @_rpc
    async def GetCorrection(
        self, request: control_pb2.GetCorrectionRequest, context: Any
    ) -> types_pb2.Correction:
        return convert.correction_to_pb(self._engine.get(request.correction_id))

    async def WatchCorrection(
        self, request: control_pb2.GetCorrectionRequest, context: Any
    ) -> AsyncIterator[types_pb2.Correction]:
        try:
            async for correction in self._engine.watch(request.correction_id):
                yield convert.correction_to_pb(correction)
        except BackstopError as exc:
            await context.abort(status_for(exc), exc.message)
