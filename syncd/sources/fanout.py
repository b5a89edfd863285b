"""Fetch numbered pages with a few workers and stream them to one consumer, in completion order;
or read a sequential source one page ahead of its consumer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import TypeVar

from syncd.sources.base import Page

T = TypeVar("T")


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


class _End:
    """What a read-ahead step returns when the pages have run out (a Task must not raise
    StopAsyncIteration: it is an exception the event loop treats as a failure)."""


_END = _End()


async def read_ahead(pages: AsyncIterator[T]) -> AsyncGenerator[T, None]:
    """`pages` in their order, the next one already being fetched while the consumer handles
    this one (one step ahead: a keyset read learns where the next page starts from this page).

    The sequence of requests is the one `pages` makes alone; only their timing changes. Leaving
    the iteration cancels the step in flight, then closes `pages`.
    """

    async def step() -> T | _End:
        try:
            return await anext(pages)
        except StopAsyncIteration:
            return _END

    ahead: asyncio.Task[T | _End] = asyncio.create_task(step(), name="read-ahead")
    try:
        while not isinstance(item := await ahead, _End):
            ahead = asyncio.create_task(step(), name="read-ahead")
            yield item
    finally:
        ahead.cancel()
        # The step's own error (a page that failed while the consumer stopped) is moot now.
        await asyncio.gather(ahead, return_exceptions=True)
        aclose = getattr(pages, "aclose", None)
        if aclose is not None:
            await aclose()
