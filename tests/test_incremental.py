"""Incremental runs, convergence under concurrent mutation, tombstones and resume (emulator on loopback)."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path

import pytest

from syncd.daemon import Runtime
from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig, Fault
from syncd.sources.adobe_commerce import format_magento_time
from syncd.sync import SyncResult
from tests.support import adobe_source, query, settings_for, stored_products, until

StartEmu = Callable[..., Awaitable[Emulator]]


@pytest.fixture
async def start_emu() -> AsyncIterator[StartEmu]:
    """Start emulators (real clock, calm tie order) closed at teardown."""
    emulators: list[Emulator] = []

    async def start(**adobe: object) -> Emulator:
        emu = Emulator(EmulatorConfig(adobe=AdobeConfig(**adobe), seed=11))  # type: ignore[arg-type]
        await emu.start()
        emulators.append(emu)
        return emu

    yield start
    for emu in emulators:
        await emu.close()


async def sync(db: Path, emu: Emulator, kind: str | None = None, **source: object) -> SyncResult:
    source.setdefault("incremental_overlap", 0)
    async with Runtime(settings_for(db, adobe_source(emu, **source))) as runtime:  # type: ignore[arg-type]
        return await runtime.sync("shop", kind)  # type: ignore[arg-type]


def watermark(db: Path) -> datetime:
    (row,) = query(db, "SELECT watermark FROM source_state WHERE source='shop'")
    return datetime.fromisoformat(json.loads(row[0])["since"])


async def mutate_when(emu: Emulator, after_requests: int, action: Callable[[], None]) -> None:
    """Run `action` once the emulator has served `after_requests` product requests."""
    start = emu.adobe.stats.requests
    await until(lambda: emu.adobe.stats.requests - start >= after_requests)
    action()


async def test_incremental_requests_only_the_pages_that_hold_changes(
    tmp_path: Path, start_emu: StartEmu
) -> None:
    """After N changes an incremental run costs about ceil(N / page_size) requests, and is exact."""
    emu = await start_emu(products=600)
    db = tmp_path / "s.db"
    assert (await sync(db, emu)).kind == "full"
    skus = list(emu.adobe.catalog.skus())
    for sku in skus[::24]:  # 25 products
        emu.adobe.catalog.update(sku, price=1.5)
    since = format_magento_time(watermark(db))
    in_window = sum(p["updated_at"] >= since for p in emu.adobe.catalog.snapshot().values())
    emu.adobe.stats.reset()
    result = await sync(db, emu)
    assert result.kind == "incremental" and result.ok
    assert emu.adobe.stats.requests <= math.ceil(in_window / 10) + 2
    assert result.totals.items_updated == 25
    assert stored_products(db, "shop") == emu.adobe.catalog.snapshot()


async def test_many_changes_in_one_second_are_all_read(tmp_path: Path, start_emu: StartEmu) -> None:
    """More same-second changes than fit a page: the keyset read steps through them all."""
    emu = await start_emu(products=200)
    db = tmp_path / "s.db"
    await sync(db, emu)
    for sku in list(emu.adobe.catalog.skus())[:47]:
        emu.adobe.catalog.update(sku, name="renamed")
    result = await sync(db, emu)
    assert result.totals.items_updated == 47
    assert stored_products(db, "shop") == emu.adobe.catalog.snapshot()


async def test_incremental_run_mutated_midway_converges_after_the_next(
    tmp_path: Path, start_emu: StartEmu
) -> None:
    """Inserts and updates landing during an incremental run are all stored by the next one."""
    emu = await start_emu(products=300, latency=0.004)
    db = tmp_path / "s.db"
    await sync(db, emu)
    skus = list(emu.adobe.catalog.skus())
    for sku in skus[:60]:
        emu.adobe.catalog.update(sku, price=2.0)

    def churn() -> None:
        for sku in skus[5:15]:  # already read: they move to the end of the keyset order
            emu.adobe.catalog.update(sku, price=3.0)
        for n in range(5):
            emu.adobe.catalog.insert(sku=f"NEW-{n}", name=f"new {n}", price=9.0)

    mutator = asyncio.create_task(mutate_when(emu, 2, churn))
    first = await sync(db, emu)
    await mutator
    assert first.ok
    second = await sync(db, emu)
    assert second.kind == "incremental" and second.ok
    assert stored_products(db, "shop") == emu.adobe.catalog.snapshot()


async def test_full_run_mutated_midway_verifies_and_is_exact(
    tmp_path: Path, start_emu: StartEmu
) -> None:
    """Deletions shift offsets mid-scan: a keyset sku listing finds what was missed, then tombstones."""
    emu = await start_emu(products=300, latency=0.004)
    db = tmp_path / "s.db"
    await sync(db, emu)
    skus = list(emu.adobe.catalog.skus())

    def churn() -> None:
        for sku in skus[:6]:
            emu.adobe.catalog.delete(sku)
        emu.adobe.catalog.insert(sku="LATE-1", name="late", price=1.0)
        emu.adobe.catalog.update(skus[200], name="changed mid-run")

    mutator = asyncio.create_task(mutate_when(emu, 3, churn))
    first = await sync(db, emu, "full", max_concurrency=2)
    await mutator
    assert first.ok and first.totals.items_deleted == 6
    listings = [
        r for r in emu.adobe.stats.log if r.query.get("fields") == "items[id,sku],total_count"
    ]
    assert len(listings) == 30  # the verification pass: skus only, one keyset page per 10
    assert stored_products(db, "shop") == emu.adobe.catalog.snapshot()
    tombstoned = {r[0] for r in query(db, "SELECT sku FROM products WHERE deleted_at IS NOT NULL")}
    assert tombstoned == set(skus[:6])
    second = await sync(db, emu)
    assert second.kind == "incremental" and second.ok
    assert stored_products(db, "shop") == emu.adobe.catalog.snapshot()


async def test_failed_run_tombstones_nothing_and_the_next_resumes(
    tmp_path: Path, start_emu: StartEmu
) -> None:
    """A partial full run deletes nothing; the next one skips committed pages and tombstones exactly."""
    emu = await start_emu(products=300)
    db = tmp_path / "s.db"
    await sync(db, emu)
    gone = list(emu.adobe.catalog.skus())[100:104]
    for sku in gone:
        emu.adobe.catalog.delete(sku)
    emu.adobe.faults.add(Fault(kind="status", status=503, after=12, times=None))
    partial = await sync(db, emu, "full", max_concurrency=1)
    assert partial.status == "failed" and "503" in (partial.error or "")
    assert query(db, "SELECT count(*) FROM products WHERE deleted_at IS NOT NULL") == [(0,)]
    committed = partial.totals.pages
    assert committed >= 10
    emu.adobe.faults.clear()
    emu.adobe.stats.reset()
    resumed = await sync(db, emu, "full")
    assert resumed.ok
    assert emu.adobe.stats.requests == 1 + 30 - committed  # page 1 again for total_count
    assert resumed.totals.items_deleted == 4
    tombstoned = {r[0] for r in query(db, "SELECT sku FROM products WHERE deleted_at IS NOT NULL")}
    assert tombstoned == set(gone)
    assert stored_products(db, "shop") == emu.adobe.catalog.snapshot()


async def test_reappearing_product_is_revived(tmp_path: Path, start_emu: StartEmu) -> None:
    """A tombstoned sku that comes back loses its deleted_at and keeps its row."""
    emu = await start_emu(products=40)
    db = tmp_path / "s.db"
    await sync(db, emu)
    sku = next(iter(emu.adobe.catalog.skus()))
    emu.adobe.catalog.delete(sku)
    assert (await sync(db, emu, "full")).totals.items_deleted == 1
    emu.adobe.catalog.insert(sku=sku, name="back again", price=5.0)
    await sync(db, emu)
    assert query(db, "SELECT deleted_at, name FROM products WHERE sku = ?", sku) == [
        (None, "back again")
    ]


async def test_incremental_run_never_tombstones(tmp_path: Path, start_emu: StartEmu) -> None:
    """Only full runs may conclude that a product is gone."""
    emu = await start_emu(products=40)
    db = tmp_path / "s.db"
    await sync(db, emu)
    emu.adobe.catalog.delete(next(iter(emu.adobe.catalog.skus())))
    result = await sync(db, emu)
    assert result.kind == "incremental" and result.totals.items_deleted == 0
    assert query(db, "SELECT count(*) FROM products WHERE deleted_at IS NOT NULL") == [(0,)]
