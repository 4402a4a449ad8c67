"""The work queue: each name once, a name added while it runs runs again, retries later."""

from __future__ import annotations

import asyncio

from backstop.operator.workqueue import WorkQueue


def test_a_name_is_queued_once_however_often_it_is_added() -> None:
    async def scenario() -> list[str]:
        queue = WorkQueue()
        for name in ("a", "b", "a", "a", "b"):
            queue.add(name)
        taken = [await queue.get(), await queue.get()]
        assert len(queue) == 0
        return taken

    assert asyncio.run(scenario()) == ["a", "b"]


def test_a_name_added_while_it_runs_runs_once_more_after() -> None:
    async def scenario() -> tuple[str, int, str]:
        queue = WorkQueue()
        queue.add("a")
        first = await queue.get()
        queue.add("a")
        queue.add("a")
        waiting = len(queue)
        queue.done("a")
        return first, waiting, await asyncio.wait_for(queue.get(), 1)

    assert asyncio.run(scenario()) == ("a", 0, "a")


def test_a_retry_comes_back_after_its_delay_and_the_earlier_retry_wins() -> None:
    async def scenario() -> tuple[bool, str]:
        queue = WorkQueue()
        queue.add_after("a", 0.05)
        queue.add_after("a", 30)  # a later retry does not postpone the earlier one
        early = len(queue) == 0
        name = await asyncio.wait_for(queue.get(), 2)
        queue.close()
        return early, name

    assert asyncio.run(scenario()) == (True, "a")
