"""What a page costs a database-backed server: time that grows with the page and the catalog.

The emulator builds a page from pre-rendered JSON in well under a millisecond; a real store runs
queries whose cost grows with the rows it returns and, more slowly, with the size of the table it
searches, and it serves only so many requests at once (a PHP-FPM pool, database connections).
`ServerCost` models that: each list page holds one of `workers` slots for
`base + per_item * items + per_log10_catalog * log10(catalog)` seconds. The time is waited, not
burnt, so a benchmark on a small machine measures the client, not the emulator's CPU.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerCost:
    """Seconds a list page takes on the server, and how many pages it serves at once."""

    base: float = 0.0
    per_item: float = 0.0
    per_log10_catalog: float = 0.0
    workers: int = 4

    def __post_init__(self) -> None:
        if min(self.base, self.per_item, self.per_log10_catalog) < 0 or self.workers < 1:
            raise ValueError("ServerCost needs non-negative times and workers >= 1")

    def seconds(self, items: int, catalog: int) -> float:
        """The time one page of `items` products out of a `catalog` of that many takes."""
        return (
            self.base
            + self.per_item * max(0, items)
            + self.per_log10_catalog * math.log10(max(1, catalog))
        )

    def describe(self) -> str:
        """`6 ms + 0.05 ms/item + 1 ms/log10(catalog), 4 workers`."""
        return (
            f"{self.base * 1000:g} ms + {self.per_item * 1000:g} ms/item + "
            f"{self.per_log10_catalog * 1000:g} ms/log10(catalog), {self.workers} workers"
        )


class ServerTime:
    """Spends a `ServerCost` per page: at most `workers` pages are being served at once."""

    def __init__(self, cost: ServerCost | None) -> None:
        self.cost = cost
        self._slots = asyncio.Semaphore(cost.workers) if cost is not None else None
        self.spent = 0.0

    async def page(self, items: int, catalog: int) -> None:
        """Wait as long as the server would take to build this page (nothing without a cost)."""
        if self.cost is None or self._slots is None:
            return
        seconds = self.cost.seconds(items, catalog)
        if seconds <= 0:
            return
        async with self._slots:
            await asyncio.sleep(seconds)
        self.spent += seconds
