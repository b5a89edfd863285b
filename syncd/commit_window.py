"""Several page commits of one full scan in flight at once, for a store whose server runs them
in parallel (PostgreSQL: each on its own pooled connection). SQLite writes one at a time, so
there the window holds one commit and the engine waits for each, as it always did.

The rule that keeps a resumed scan exact: a checkpoint claims only pages whose own commit has
succeeded (`claims`), plus the page it is committed with. Commits may finish in any order, so a
stored checkpoint may claim fewer pages than are committed (a resume reads those again, which
changes nothing), never more. Pages in flight together never share a sku (`overlaps`: the
engine waits for the window first), so their rows and scan marks never interleave.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Self

from syncd.store.base import UpsertCounts


class CommitWindow:
    """Up to `depth` page writes in flight; each successful one confirms its page number. Use
    as `async with`: leaving the block waits for every write (and raises a failed one's error)."""

    def __init__(self, depth: int, confirmed: Iterable[int]) -> None:
        self.depth = max(1, depth)
        self.confirmed = set(confirmed)
        self._pending: dict[asyncio.Future[UpsertCounts], tuple[int | None, frozenset[str]]] = {}
        self._counted: dict[asyncio.Future[UpsertCounts], Callable[[UpsertCounts], None]] = {}
        self._error: BaseException | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Every write in flight ends before the scan goes on (or gives up)."""
        if exc is None:
            await self.drain()
        else:
            await self.abandon()

    def claims(self, number: int | None) -> frozenset[int]:
        """The pages a checkpoint written now may call done: the confirmed ones and `number`."""
        return frozenset(self.confirmed if number is None else self.confirmed | {number})

    def overlaps(self, skus: Iterable[str]) -> bool:
        """Whether a write in flight has one of `skus`."""
        if not self._pending:
            return False
        wanted = set(skus)
        return any(wanted & written for _, written in self._pending.values())

    async def add(
        self,
        number: int | None,
        skus: Iterable[str],
        write: Awaitable[UpsertCounts],
        counted: Callable[[UpsertCounts], None],
    ) -> None:
        """Start `write` (confirming page `number` when it succeeds; None: a page that is not
        done), then wait while the window is full. Raises the error of a failed write."""
        self._raise()
        task = asyncio.ensure_future(write)
        self._pending[task] = (number, frozenset(skus))
        self._counted[task] = counted
        while len(self._pending) >= self.depth:
            done, _ = await asyncio.wait(self._pending, return_when=asyncio.FIRST_COMPLETED)
            self._settle(done)
            self._raise()

    async def drain(self) -> None:
        """Wait for every write in flight; raises the error of a failed one."""
        while self._pending:
            done, _ = await asyncio.wait(self._pending, return_when=asyncio.FIRST_COMPLETED)
            self._settle(done)
        self._raise()

    async def abandon(self) -> None:
        """On the way out of a failed or cancelled scan: let every write in flight end (each
        commits whole or not at all) and count the ones that committed; raises nothing."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
            self._settle(set(self._pending))

    def _settle(self, done: Iterable[asyncio.Future[UpsertCounts]]) -> None:
        for task in done:
            number, _ = self._pending.pop(task)
            counted = self._counted.pop(task)
            if task.cancelled():
                self._error = self._error or asyncio.CancelledError()
            elif (error := task.exception()) is not None:
                self._error = self._error or error
            else:
                if number is not None:
                    self.confirmed.add(number)
                counted(task.result())

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error
