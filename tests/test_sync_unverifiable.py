"""The engine with a source that cannot verify a scan (no keyset listing): a scan never
tombstones, and a doubtful one clears the watermark so that the next run is a full scan."""

from __future__ import annotations

from collections.abc import AsyncIterator

from structlog.testing import capture_logs

from syncd.http import RequestStats
from syncd.sources import Page
from syncd.sources.base import Cursor, VerifiableSource, make_record
from syncd.store import ProductRecord, SqliteStore
from syncd.sync import SyncEngine
from tests.clocks import FakeClock


def record(n: int) -> ProductRecord:
    item = {"id": n, "sku": f"p{n}", "updated_at": "2026-03-01 12:00:00"}
    return make_record(
        item, sku=f"p{n}", id=n, name=None, price=None, status=1, type_id="simple",
        updated_at="2026-03-01 12:00:00",
    )  # fmt: skip


class ListingOnly:
    """Serves `pages` of two products for a full read, nothing for an incremental one; has no
    probe, listing or fetch by sku, so the engine cannot verify what it reads."""

    name = "plain"
    page_size = 2

    def __init__(self, pages: list[list[int]], total: int) -> None:
        self.pages, self.total = pages, total
        self.incremental_reads = 0

    async def full_pages(
        self, stats: RequestStats, skip: frozenset[int] = frozenset()
    ) -> AsyncIterator[Page]:
        for number, ids in enumerate(self.pages, start=1):
            if number not in skip:
                yield Page(number, [record(n) for n in ids], total_count=self.total)

    async def changed_pages(self, stats: RequestStats, cursor: Cursor) -> AsyncIterator[Page]:
        self.incremental_reads += 1
        for _ in ():
            yield Page(1, [])


async def test_the_double_is_not_verifiable() -> None:
    """The double really exercises the other branch: it is a Source, not a VerifiableSource."""
    assert not isinstance(ListingOnly([], 0), VerifiableSource)


async def test_a_complete_scan_stores_everything_and_tombstones_nothing(
    store: SqliteStore, clock: FakeClock
) -> None:
    """A product gone from a later complete scan stays: without a keyset listing the engine
    never proves a product is gone. The watermark is set, so the next run is incremental."""
    engine = SyncEngine(store, clock)
    first = await engine.run(ListingOnly([[1, 2], [3]], total=3))
    assert first.ok and first.totals.items_created == 3
    second = await engine.run(ListingOnly([[1, 2]], total=2), "full")
    assert second.ok and second.totals.items_deleted == 0
    assert await store.count_products("plain") == 3
    assert (await store.source_state("plain")).watermark is not None
    source = ListingOnly([], total=0)
    third = await engine.run(source)
    assert third.kind == "incremental" and source.incremental_reads == 1


async def test_a_doubtful_scan_clears_the_watermark(store: SqliteStore, clock: FakeClock) -> None:
    """Fewer distinct products than total_count: logged as incomplete with the non-verifying
    consequence, the watermark is cleared, and the next scheduled run is a full scan."""
    engine = SyncEngine(store, clock)
    assert (await engine.run(ListingOnly([[1, 2]], total=2))).ok
    with capture_logs() as logs:
        result = await engine.run(ListingOnly([[1, 2], [3]], total=5), "full")
    assert result.ok and result.totals.items_deleted == 0
    incomplete = next(e for e in logs if e["event"] == "sync.scan_incomplete")
    assert incomplete["consequence"] == "no tombstones; the next run is a full scan"
    assert (await store.source_state("plain")).watermark is None
    source = ListingOnly([[1, 2], [3]], total=3)
    again = await engine.run(source)
    assert again.kind == "full" and source.incremental_reads == 0
    assert (await store.source_state("plain")).watermark is not None
