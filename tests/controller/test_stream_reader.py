"""How a stream's reader task ends is always retrieved, whichever side of the stream left first."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import grpc
import pytest

from backstop.controller.agent_stream import stop_reader


async def _fails_with(exc: BaseException) -> str:
    raise exc


async def _waits_forever() -> str:
    await asyncio.Event().wait()
    return "unreachable"


def _run_and_collect(make_reader: Any) -> list[dict[str, Any]]:
    """Run a reader, stop it the gateway's way, and return what the loop reported unhandled."""
    unhandled: list[dict[str, Any]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: unhandled.append(ctx))
        reader = asyncio.create_task(make_reader())
        await asyncio.sleep(0.01)  # the reader has finished (or is parked) before the writer leaves
        await stop_reader(reader)
        del reader
        gc.collect()

    asyncio.run(main())
    return unhandled


def test_a_reader_that_found_the_rpc_over_is_retrieved_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The case CI met: the writer left, the reader's read raised a gRPC termination error."""
    with caplog.at_level(logging.DEBUG):
        unhandled = _run_and_collect(lambda: _fails_with(grpc.aio.UsageError("RPC finished")))
    assert unhandled == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_reader_that_failed_otherwise_is_logged_as_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    unhandled = _run_and_collect(lambda: _fails_with(RuntimeError("bug in the reader")))
    assert unhandled == []
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == ["agent stream reader failed"]


def test_a_reader_still_reading_is_cancelled_and_awaited() -> None:
    seen: list[asyncio.Task[str]] = []

    async def main() -> None:
        reader = asyncio.create_task(_waits_forever())
        seen.append(reader)
        await asyncio.sleep(0)
        await stop_reader(reader)

    asyncio.run(main())
    assert seen[0].cancelled()
