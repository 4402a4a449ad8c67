"""The message size limit, enforced where a refusal can be audited.

gRPC's own ``grpc.max_receive_message_length`` refuses a larger message inside the transport:
no handler runs, so nothing could say who sent it. The controller therefore gives the
transport a higher ceiling (:func:`transport_limit`, twice the configured limit) and enforces
the configured limit itself, in :class:`MessageLimit`, a server interceptor that hands every
handler the raw request bytes, checks their size, audits an oversized message as a refusal
(class ``oversized``, under the sender's certificate identity, aggregated by the
:class:`~backstop.controller.refusals.RefusalLog`) and only then decodes it:

- unary requests (control API): refused with RESOURCE_EXHAUSTED before the handler runs;
- request streams (an agent's ``Connect``): the handler's ``context.read()`` raises
  :class:`MessageTooLarge` (an ``InvalidInput``), and the stream ends with RESOURCE_EXHAUSTED.

Messages above the transport ceiling are still refused by gRPC itself and are not audited;
each needs a valid client certificate, and the ceiling bounds the memory one message takes.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from backstop.controller.refusals import RefusalLog, actor_of, peer_of
from backstop.core.errors import InvalidInput

AGENT_SERVICE = "/backstop.v1.AgentGateway/"
Deserializer = Callable[[bytes], Any] | None


def transport_limit(limit: int) -> int:
    """The ceiling given to gRPC: messages between ``limit`` and this are refused and audited
    by :class:`MessageLimit`."""
    return 2 * limit


class MessageTooLarge(InvalidInput):
    """A message over the limit (already audited); streams end with RESOURCE_EXHAUSTED."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"a message of {size} bytes is over the limit of {limit} bytes")


class MessageLimit(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, limit: int, refusals: RefusalLog) -> None:
        self._limit = limit
        self._refusals = refusals

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: Any
    ) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        method = str(details.method)
        # the handler's behaviour field: unary_unary, unary_stream, stream_unary, stream_stream
        kind = "_".join(
            "stream" if streaming else "unary"
            for streaming in (handler.request_streaming, handler.response_streaming)
        )
        wrap = self._stream if handler.request_streaming else self._unary
        behaviour = wrap(method, handler.request_deserializer, getattr(handler, kind))
        return handler._replace(request_deserializer=None, **{kind: behaviour})

    def check(self, method: str, raw: bytes, context: Any) -> None:
        """Audit and raise :class:`MessageTooLarge` when ``raw`` is over the limit."""
        if len(raw) <= self._limit:
            return
        error = MessageTooLarge(len(raw), self._limit)
        self._refusals.refuse(
            actor_of(context),
            "agent.refused" if method.startswith(AGENT_SERVICE) else "request.refused",
            method,
            refusal="oversized",
            reason=error.message,
            peer=peer_of(context),
            size=len(raw),
        )
        raise error

    def _unary(self, method: str, decode: Deserializer, behaviour: Any) -> Any:
        async def admit(raw: bytes, context: Any) -> Any:
            try:
                self.check(method, raw, context)
                return decode(raw) if decode is not None else raw
            except MessageTooLarge as exc:
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, exc.message)
            except DecodeError:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"the request is not a valid {method}"
                )

        if inspect.isasyncgenfunction(behaviour):

            async def stream_out(raw: bytes, context: Any) -> AsyncIterator[Any]:
                request = await admit(raw, context)
                async for item in behaviour(request, context):
                    yield item

            return stream_out

        async def call(raw: bytes, context: Any) -> Any:
            request = await admit(raw, context)
            result = behaviour(request, context)
            return await result if inspect.isawaitable(result) else result

        return call

    def _stream(self, method: str, decode: Deserializer, behaviour: Any) -> Any:
        if inspect.isasyncgenfunction(behaviour):

            async def stream_out(request_iterator: Any, context: Any) -> AsyncIterator[Any]:
                limited = _LimitedContext(context, self, method, decode)
                async for item in behaviour(limited.requests(), limited):
                    yield item

            return stream_out

        async def call(request_iterator: Any, context: Any) -> Any:
            limited = _LimitedContext(context, self, method, decode)
            result = behaviour(limited.requests(), limited)
            return await result if inspect.isawaitable(result) else result

        return call


class _LimitedContext:
    """A servicer context whose ``read()`` checks the size before decoding."""

    def __init__(self, context: Any, limit: MessageLimit, method: str, decode: Deserializer):
        self._context = context
        self._limit = limit
        self._method = method
        self._decode = decode

    async def read(self) -> Any:
        raw = await self._context.read()
        if raw is grpc.aio.EOF:
            return raw
        self._limit.check(self._method, raw, self._context)
        return self._decode(raw) if self._decode is not None else raw

    async def requests(self) -> AsyncIterator[Any]:
        while True:
            message = await self.read()
            if message is grpc.aio.EOF:
                return
            yield message

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)
