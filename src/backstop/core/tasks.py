"""Running a daemon's long-lived asyncio tasks together."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any


async def run_until_one_fails(tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Wait while the tasks run; when one fails its error is raised here. Either way (a
    failure, or this coroutine being cancelled), every task is cancelled and awaited first."""
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
