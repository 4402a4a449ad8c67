"""gRPC server reflection on the control port, for the callers the control API admits.

Reflection lets generic tools (grpcurl, Postman, Evans) list the services and fetch their schema
without a copy of protos/. It is served on the agent/control port, so it has that port's TLS
and client certificates; on top of that each reflection stream is admitted like a read-only
control call (a viewer in the trust policy, certificate not revoked; anyone in open mode), and
a refusal is audited the same way. ``controller serve --no-reflection`` leaves it out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import grpc
from grpc_health.v1 import health
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc
from grpc_reflection.v1alpha._async import ReflectionServicer

from backstop.controller.authz import Refused


class AdmittedReflection(ReflectionServicer):  # type: ignore[misc]
    """The stock reflection servicer behind ``admit(context)``, which raises :class:`Refused`."""

    def __init__(self, service_names: Iterable[str], admit: Callable[[Any], object]) -> None:
        super().__init__(tuple(service_names))
        self._admit = admit

    async def ServerReflectionInfo(
        self, request_iterator: AsyncIterator[Any], context: Any
    ) -> AsyncIterator[Any]:
        try:
            self._admit(context)
        except Refused as exc:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, exc.message)
        async for response in super().ServerReflectionInfo(request_iterator, context):
            yield response


def add_reflection(
    server: grpc.aio.Server, service_names: Iterable[str], admit: Callable[[Any], object]
) -> None:
    """Serve reflection for ``service_names``, the health service and reflection itself."""
    names = (*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        AdmittedReflection(names, admit), server
    )
