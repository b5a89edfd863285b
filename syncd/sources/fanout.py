"""Fetch numbered pages with a few workers and stream them to one consumer, in completion order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator

from syncd.sources.base import Page


async def fetch_concurrently(
    numbers: Iterable[int], fetch: Callable[[int], Awaitable[Page]], workers: int, name: str
) -> AsyncGenerator[Page, None]:
    """Pages `numbers` fetched by up to `workers` tasks; the first error is re-raised here. An
    empty page stops the fan-out: no page is asked for after it (those in flight still arrive).

    `numbers` is drawn lazily, one number per request (a `range` is never expanded), and the
    queue towards the consumer is bounded, so a slow consumer (the store) holds fetching back and
    memory stays flat whatever the catalog size. Leaving the iteration cancels the workers.
    """
    todo: Iterator[int] = iter(numbers)
    count = max(1, workers)
    done: asyncio.Queue[Page | BaseException | None] = asyncio.Queue(maxsize=count * 2)

    ended = asyncio.Event()

    async def worker() -> None:
        try:
            # One shared iterator: `next` runs between awaits, so no number is taken twice.
            for number in todo:
                if ended.is_set():
                    break
                page = await fetch(number)
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
