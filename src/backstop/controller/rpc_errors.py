"""How control API calls answer errors: Backstop errors map to gRPC status codes in one place
(:func:`status_for`), so every client sees INVALID_ARGUMENT for bad input, NOT_FOUND for unknown
ids, FAILED_PRECONDITION for conflicts and UNAVAILABLE for temporary failures."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from backstop.core.errors import BackstopError, status_name_for

T = TypeVar("T")


def status_for(exc: BackstopError) -> grpc.StatusCode:
    """The status an error is sent as (``core.errors.ERROR_TABLE``)."""
    return grpc.StatusCode[status_name_for(exc)]


def rpc(
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
