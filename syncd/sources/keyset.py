"""A long keyset read split into entity-id ranges read side by side, without losing a change.

Why nothing is lost: an update moves a product along the (updated_at, id) order but never changes
its id, and an insert takes a new id above every bound, so each product stays in one range for the
whole read; inside its range the one-range keyset argument holds as it is (a product changed after
the cursor passed it sorts after the cursor again, to be read later in the range or by the next
run). The cursor each page carries is the least of the ranges' cursors over the pages handed out
so far (each committed before the next), so the watermark never passes a product that a range
has not read yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime

from syncd.sources.base import Cursor, Page
from syncd.store import ProductRecord

SPLIT_FROM = 6
"""Pages left after the first from which a read is split in two: the split costs one request for
the highest id and at most one partly filled page more, so a read of C changes stays within
⌈C/P⌉ + 2 requests (the incremental floor), and it pays from here: 1 + ⌈r/2⌉ pages in a row
instead of r."""

IdRange = tuple[int | None, int | None]
"""Ids above the first bound and up to the second (None: no bound on that side)."""


@dataclass(frozen=True, slots=True)
class KeysetAnswer:
    """One keyset page as read: its products, the `total_count` after its cursor, and the cursor
    that follows its last product."""

    records: list[ProductRecord]
    total: int
    following: Cursor


Fetch = Callable[[Cursor, IdRange, int], AsyncGenerator[KeysetAnswer, None]]
"""Reads one range by keyset from a cursor, page after page (the int numbers its first page)."""


def order(cursor: Cursor) -> tuple[datetime, int]:
    """Where `cursor` stands in (updated_at, id) order; a cursor without an id comes first in its
    moment (it reads the whole moment again)."""
    return cursor.since, -1 if cursor.after_id is None else cursor.after_id


def halves(low: int, top: int) -> list[IdRange]:
    """Ids up to the middle of [`low`, `top`], and above it (open-ended: new products land there);
    nothing to split when the span is too narrow."""
    if top - low < 2:
        return []
    middle = (low + top) // 2
    return [(None, middle), (middle, None)]


async def read_ranges(
    read: Fetch, start: Cursor, ranges: Sequence[IdRange], number: int
) -> AsyncGenerator[Page, None]:
    """Each of `ranges` read by keyset from `start` by its own task; pages in arrival order,
    numbered from `number` + 1. The first error is re-raised here; leaving the iteration cancels
    the readers."""
    at = [start] * len(ranges)
    done: asyncio.Queue[tuple[int, KeysetAnswer] | BaseException | None]
    done = asyncio.Queue(maxsize=len(ranges))  # a slow consumer holds the readers back

    async def reader(index: int, ids: IdRange) -> None:
        try:
            async with aclosing(read(start, ids, number)) as answers:
                async for answer in answers:
                    await done.put((index, answer))
        except Exception as exc:  # handed to the consumer, which re-raises it
            await done.put(exc)
            return
        await done.put(None)  # not in `finally`: once cancelled, nobody reads it

    tasks = [
        asyncio.create_task(reader(n, ids), name=f"keyset-range-{n}")
        for n, ids in enumerate(ranges)
    ]
    try:
        running = len(tasks)
        while running:
            item = await done.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                index, answer = item
                at[index] = answer.following
                number += 1
                yield Page(number, answer.records, answer.total, None, min(at, key=order))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
