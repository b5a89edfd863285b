"""Fetch numbered pages with a few workers and stream them to one consumer, in completion order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable

from syncd.sources.base import Page


async def fetch_concurrently(
    numbers: list[int], fetch: Callable[[int], Awaitable[Page]], workers: int, name: str
) -> AsyncGenerator[Page, None]:
    """Pages `numbers` fetched by up to `workers` tasks; the first error is re-raised here. An
    empty page stops the fan-out: no page is asked for after it (those in flight still arrive).

    The queue towards the consumer is bounded, so a slow consumer (the store) holds fetching back
    and memory stays flat whatever the catalog size. Leaving the iteration cancels the workers.
    """
    todo: asyncio.Queue[int] = asyncio.Queue()
    for number in numbers:
        todo.put_nowait(number)
    count = max(1, min(workers, len(numbers)))
    done: asyncio.Queue[Page | BaseException | None] = asyncio.Queue(maxsize=count * 2)

    ended = asyncio.Event()

    async def worker() -> None:
        try:
            while not todo.empty() and not ended.is_set():
                page = await fetch(todo.get_nowait())
                if not page.records:
                    # The catalog ends here (it shrank), or a proxy served an empty page: either
                    # way what follows is not to be trusted; the engine verifies.
                    ended.set()
                await done.put(page)
        except Exception as exc:  # handed to the consumer, which re-raises it
            await done.put(exc)
        # Not in `finally`: once cancelled, no consumer reads it, and a full queue would block
        # this worker (and the gather that waits for it) forever.
        await done.put(None)

    tasks = [asyncio.create_task(worker(), name=f"{name}-page-worker") for _ in range(count)]
    try:
        finished = 0
        while finished < count:
            item = await done.get()
            if item is None:
                finished += 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
