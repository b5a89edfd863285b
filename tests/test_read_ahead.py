"""`read_ahead`: a sequential source read one page ahead of its consumer, same order, same
requests, errors where the consumer would have met them, nothing left running when it stops."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from syncd.sources.fanout import read_ahead


class Source:
    """Numbers 1..`count`, logging when each is asked for; `fail_at` raises instead."""

    def __init__(self, count: int, fail_at: int | None = None) -> None:
        self.count, self.fail_at = count, fail_at
        self.log: list[str] = []
        self.closed = False

    async def pages(self) -> AsyncGenerator[int]:
        try:
            for n in range(1, self.count + 1):
                self.log.append(f"ask {n}")
                await asyncio.sleep(0)  # the request's round trip
                if n == self.fail_at:
                    raise RuntimeError(f"page {n} failed")
                yield n
        finally:
            self.closed = True


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_the_next_page_is_asked_for_while_the_consumer_handles_this_one() -> None:
    source = Source(3)
    got = []
    async for n in read_ahead(source.pages()):
        await settle()  # the consumer's commit
        assert f"ask {min(n + 1, 3)}" in source.log  # asked before the consumer asks for it
        source.log.append(f"done {n}")
        got.append(n)
    assert got == [1, 2, 3]
    assert source.log == ["ask 1", "ask 2", "done 1", "ask 3", "done 2", "done 3"]
    assert source.closed


async def test_an_error_reaches_the_consumer_after_the_pages_before_it() -> None:
    source = Source(5, fail_at=3)
    done: list[int] = []

    async def consume() -> None:
        async for n in read_ahead(source.pages()):
            await settle()
            done.append(n)

    with pytest.raises(RuntimeError, match="page 3 failed"):
        await consume()
    assert done == [1, 2] and source.closed


async def test_leaving_early_cancels_the_page_in_flight_and_closes_the_source() -> None:
    source = Source(10)
    pages = read_ahead(source.pages())
    assert await anext(pages) == 1
    await asyncio.sleep(0)  # page 2 is being asked for
    assert source.log == ["ask 1", "ask 2"]
    await pages.aclose()
    await settle()
    assert source.closed and source.log == ["ask 1", "ask 2"]
