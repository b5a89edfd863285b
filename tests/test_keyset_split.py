"""A long incremental read split in two entity-id ranges read side by side (Adobe Commerce): what
it costs, that the watermark never passes a product a range has not read, and that changes
landing during the read are read or left after the watermark (syncd/sources/keyset.py)."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig, Fault
from syncd.runtime import Runtime
from syncd.sources.adobe_commerce import parse_magento_time
from syncd.sources.base import Cursor, Page
from syncd.sources.keyset import SPLIT_FROM, IdRange, KeysetAnswer, halves, order, read_ranges
from syncd.store import ProductRecord
from syncd.sync import SyncResult
from tests.support import adobe_source, query, settings_for, stored_products

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ENTITY = "searchCriteria[filter_groups]"


def at(second: int, after_id: int | None = None) -> Cursor:
    return Cursor(T0 + timedelta(seconds=second), after_id=after_id)


def answer(sku: str, cursor: Cursor, total: int = 5) -> KeysetAnswer:
    record = ProductRecord(sku, 1, None, None, None, None, None, "{}", "h")
    return KeysetAnswer([record], total, cursor)


def test_halves_split_the_ids_left_at_their_middle() -> None:
    assert halves(100, 300) == [(None, 200), (200, None)]
    assert halves(0, 1) == [] and halves(7, 7) == []


async def test_each_page_carries_the_least_cursor_of_the_ranges() -> None:
    """Range `lo` runs ahead to second 9 while range `hi` stalls at second 2: every page carries
    the cursor of the range furthest behind (the start, for a range that has handed out
    nothing), never one past a product `hi` has not read."""
    start = at(1, 5)
    hold = asyncio.Event()
    script = {
        (None, 50): [answer("lo-1", at(3, 10)), answer("lo-2", at(9, 20))],
        (50, None): [answer("hi-1", at(2, 60)), answer("hi-2", at(4, 70))],
    }

    async def read(cursor: Cursor, ids: IdRange, number: int) -> AsyncGenerator[KeysetAnswer]:
        assert cursor == start
        first, second = script[ids]
        yield first
        if ids[0] is not None:
            await hold.wait()  # `hi` stalls after its first page, until `lo` is done
        yield second

    following = {a.records[0].sku: a.following for pair in script.values() for a in pair}
    handed = {"lo": start, "hi": start}
    carried: dict[str, Cursor | None] = {}
    async with asyncio.timeout(5):
        async for page in read_ranges(read, start, halves(0, 100), 1):
            sku = page.records[0].sku
            handed[sku[:2]] = following[sku]
            carried[sku] = page.cursor
            assert page.cursor == min(handed.values(), key=order)
            if sku == "lo-2":
                hold.set()
    assert list(carried)[-1] == "hi-2"  # `lo` ran ahead of `hi`
    assert carried["lo-2"] in (start, at(2, 60))  # never `lo`'s own second 9
    assert carried["hi-2"] == at(4, 70)


async def test_a_failing_range_stops_the_read_and_the_other_range() -> None:
    """The first error reaches the consumer after the pages already handed out; the other
    range's reader is cancelled and its generator closed."""
    closed: list[IdRange] = []
    never = asyncio.Event()

    async def read(cursor: Cursor, ids: IdRange, number: int) -> AsyncGenerator[KeysetAnswer]:
        try:
            yield answer(f"{ids}", at(2, 1))
            if ids[1] is None:
                raise RuntimeError("page 2 of the upper range failed")
            await never.wait()
            yield answer("never", at(3, 1))
        finally:
            closed.append(ids)

    seen: list[Page] = []

    async def consume() -> None:
        async with asyncio.timeout(5):
            async for page in read_ranges(read, at(1, 1), halves(0, 100), 1):
                seen.append(page)  # noqa: PERF401 - the pages before the error count

    with pytest.raises(RuntimeError, match="upper range"):
        await consume()
    assert len(seen) == 2 and "never" not in {p.records[0].sku for p in seen}
    assert sorted(closed, key=str) == sorted(halves(0, 100), key=str)


async def test_leaving_the_read_early_cancels_both_ranges() -> None:
    closed: list[IdRange] = []

    async def read(cursor: Cursor, ids: IdRange, number: int) -> AsyncGenerator[KeysetAnswer]:
        try:
            n = 0
            while True:
                n += 1
                yield answer(f"{ids}-{n}", at(n, n))
        finally:
            closed.append(ids)

    pages = read_ranges(read, at(0, 0), halves(0, 100), 1)
    async with asyncio.timeout(5):
        first = await anext(pages)
        await pages.aclose()
    assert first.number == 2  # numbered after the first page of the whole read
    assert len(closed) == 2


# -- on the emulator ------------------------------------------------------------------------------


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    emulator = Emulator(EmulatorConfig(adobe=AdobeConfig(products=600, latency=0.002), seed=11))
    await emulator.start()
    yield emulator
    await emulator.close()


async def sync(db: Path, emu: Emulator, kind: str | None = None, **source: Any) -> SyncResult:
    source.setdefault("incremental_overlap", 0)
    async with Runtime(settings_for(db, adobe_source(emu, **source))) as runtime:
        return await runtime.sync("shop", kind)  # type: ignore[arg-type]


def watermark(db: Path) -> datetime:
    (row,) = query(db, "SELECT watermark FROM source_state WHERE source='shop'")
    return datetime.fromisoformat(json.loads(row[0])["since"])


def stale(db: Path, emu: Emulator) -> dict[str, datetime]:
    """Skus whose stored copy differs from the catalog's, with their `updated_at` there."""
    live = stored_products(db, "shop")
    catalog = emu.adobe.catalog.snapshot()
    return {sku: changed_at(p) for sku, p in catalog.items() if live.get(sku) != p}


def changed_at(product: dict[str, Any]) -> datetime:
    moment = parse_magento_time(product["updated_at"])
    assert moment is not None
    return moment


def id_bounds(asked: dict[str, str]) -> list[tuple[str, str]]:
    """The entity-id bounds of a keyset request (groups after the keyset's own 0 and 1)."""
    return [
        (
            asked[key.replace("[field]", "[condition_type]")],
            asked[key.replace("[field]", "[value]")],
        )
        for key, value in asked.items()
        if value == "entity_id" and key.startswith(ENTITY) and not key.startswith(f"{ENTITY}[1]")
    ]


def spread_changes(emu: Emulator, since: datetime, count: int) -> list[str]:
    """`count` products spread over the catalog, each changed in its own second after `since`."""
    catalog = emu.adobe.catalog
    skus = list(catalog.skus())
    changed = skus[:: len(skus) // count][:count]
    for n, sku in enumerate(changed):
        catalog.update(sku, price=1.5, updated_at=since + timedelta(seconds=2 + n))
    return changed


async def test_a_long_read_is_split_in_two_ranges_within_the_request_budget(
    tmp_path: Path, emu: Emulator
) -> None:
    """100 changes, pages of 10: the first page, the highest id, then two id ranges side by side
    from where the first page ended; at most ceil(100/10) + 2 requests, and exact."""
    db = tmp_path / "s.db"
    await sync(db, emu)
    changed = spread_changes(emu, watermark(db), 100)
    emu.adobe.stats.reset()
    result = await sync(db, emu)
    assert result.ok and result.kind == "incremental", result.error
    log = [r.query for r in emu.adobe.stats.log]
    assert log[1]["searchCriteria[sortOrders][0][field]"] == "entity_id"  # the highest id
    assert id_bounds(log[0]) == []
    bounds = [id_bounds(asked) for asked in log[2:]]
    assert all(len(b) == 1 for b in bounds)  # each range request: one bound
    assert len({value for ((_, value),) in bounds}) == 1  # one middle
    assert {b for ((b, _),) in bounds} == {"lteq", "gt"}
    assert emu.adobe.stats.requests == result.totals.requests <= math.ceil(100 / 10) + 2
    assert result.totals.items_updated == 100
    assert stored_products(db, "shop") == emu.adobe.catalog.snapshot()
    # Both ranges read to their end: the watermark is where the one that ended first stopped.
    newest = max(changed_at(emu.adobe.catalog.get(sku)) for sku in changed)
    assert watermark(db) <= newest


async def test_a_short_read_or_one_request_at_a_time_is_not_split(
    tmp_path: Path, emu: Emulator
) -> None:
    db = tmp_path / "s.db"
    await sync(db, emu)
    spread_changes(emu, watermark(db), 10 * SPLIT_FROM)  # SPLIT_FROM - 1 pages after the first
    emu.adobe.stats.reset()
    assert (await sync(db, emu)).ok
    assert emu.adobe.stats.requests == SPLIT_FROM
    spread_changes(emu, watermark(db) + timedelta(seconds=100), 100)
    emu.adobe.stats.reset()
    assert (await sync(db, emu, max_concurrency=1)).ok
    # 101: the product in the watermark's second is read again (an inclusive cursor).
    assert emu.adobe.stats.requests == math.ceil(101 / 10)
    assert stored_products(db, "shop") == emu.adobe.catalog.snapshot()


async def test_changes_during_a_split_read_are_read_or_left_after_the_watermark(
    tmp_path: Path, emu: Emulator
) -> None:
    """While both ranges are being read: products of both ranges already read change again,
    products not read yet change or go, new products arrive (ids above every bound). The run
    leaves no stale product before its watermark; the next run is exact, and the next full run
    tombstones exactly the deleted products."""
    db = tmp_path / "s.db"
    await sync(db, emu)
    changed = spread_changes(emu, watermark(db), 100)
    order = sorted(changed, key=lambda s: emu.adobe.catalog.get(s)["id"])
    low, high = order[:50], order[50:]
    catalog = emu.adobe.catalog
    later = watermark(db) + timedelta(seconds=500)

    def churn() -> None:
        for n, sku in enumerate([*low[11:14], *high[1:3]]):  # read by now in their range
            catalog.update(sku, price=7.0, updated_at=later + timedelta(seconds=n))
        for n, sku in enumerate([*low[-3:], *high[-3:]]):  # not read yet
            catalog.update(sku, price=8.0, updated_at=later + timedelta(seconds=10 + n))
        for sku in (low[-5], high[-5]):
            catalog.delete(sku)
        for n in range(3):
            moment = later + timedelta(seconds=20 + n)
            catalog.insert(sku=f"NEW-{n}", name=f"n{n}", price=9.0, updated_at=moment)

    emu.adobe.stats.reset()
    emu.adobe.before_request(6, churn)  # page 1, the highest id, two pages of each range
    first = await sync(db, emu)
    assert first.ok, first.error
    assert sum(bool(id_bounds(r.query)) for r in emu.adobe.stats.log) >= 4
    mark = watermark(db)
    assert all(t >= mark for t in stale(db, emu).values())
    second = await sync(db, emu)
    assert second.ok and second.kind == "incremental"
    live = stored_products(db, "shop")
    assert {sku: live[sku] for sku in catalog.snapshot()} == catalog.snapshot()
    assert set(live) - set(catalog.snapshot()) == {low[-5], high[-5]}
    full = await sync(db, emu, "full")
    assert full.ok and full.totals.items_deleted == 2
    assert stored_products(db, "shop") == catalog.snapshot()


async def test_a_range_that_fails_holds_the_watermark_behind_what_it_did_not_read(
    tmp_path: Path, emu: Emulator
) -> None:
    """Every request after the sixth fails while the ranges are mid-way: the pages committed
    stay, no product before the watermark is stale, and the next run is exact."""
    db = tmp_path / "s.db"
    await sync(db, emu)
    spread_changes(emu, watermark(db), 100)
    emu.adobe.stats.reset()
    emu.adobe.faults.add(Fault(kind="status", status=500, after=6, times=None))
    failed = await sync(db, emu)
    assert failed.status == "failed" and 3 <= failed.totals.pages <= 5
    mark = watermark(db)
    behind = stale(db, emu)
    assert len(behind) >= 100 - 10 * failed.totals.pages
    assert all(t >= mark for t in behind.values())
    emu.adobe.faults.clear()
    assert (await sync(db, emu)).ok
    assert stored_products(db, "shop") == emu.adobe.catalog.snapshot()
