"""AmeriCommerce incremental runs, convergence under mutation, tombstones and resume (emulator);
what both platforms share is in test_incremental_platforms.py."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from syncd.daemon import Runtime
from syncd.emulator import AmeriCommerceConfig, Emulator, EmulatorConfig, Fault
from syncd.sync import SyncResult
from tests.support import ac_source, query, settings_for, stored_products, until

PRODUCTS = "/api/v1/products"
LISTING = "id,item_number"
StartEmu = Callable[..., Awaitable[Emulator]]


@pytest.fixture
async def start_emu() -> AsyncIterator[StartEmu]:
    """Start AmeriCommerce emulators on the real clock, without a binding call limit."""
    emulators: list[Emulator] = []

    async def start(**ac: object) -> Emulator:
        ac.setdefault("static_tokens", ("ac-console-token",))
        ac.setdefault("call_limit", 100_000)
        config = EmulatorConfig(americommerce=AmeriCommerceConfig(**ac), seed=11)  # type: ignore[arg-type]
        emu = Emulator(config)
        await emu.start()
        emulators.append(emu)
        return emu

    yield start
    for emu in emulators:
        await emu.close()


async def sync(db: Path, emu: Emulator, kind: str | None = None, **source: Any) -> SyncResult:
    source.setdefault("incremental_overlap", 0)
    async with Runtime(settings_for(db, ac_source(emu, **source))) as runtime:
        return await runtime.sync("shop", kind)  # type: ignore[arg-type]


def watermark(db: Path) -> datetime:
    (row,) = query(db, "SELECT watermark FROM source_state WHERE source='shop'")
    return datetime.fromisoformat(json.loads(row[0])["since"])


def probes(emu: Emulator) -> list[int]:
    """Positions (1-based) in the request log of the catalog probes (sort=-created_at)."""
    log = emu.americommerce.stats.requests_to(PRODUCTS)
    return [n for n, r in enumerate(log, 1) if r.query.get("sort") == "-created_at"]


def listings(emu: Emulator) -> int:
    return sum(r.query.get("fields") == LISTING for r in emu.americommerce.stats.log)


def tombstoned(db: Path) -> set[str]:
    return {r[0] for r in query(db, "SELECT sku FROM products WHERE deleted_at IS NOT NULL")}


async def mutate_when(emu: Emulator, after_requests: int, action: Callable[[], None]) -> None:
    """Run `action` once the store has served `after_requests` more product requests."""
    start = emu.americommerce.stats.requests
    await until(lambda: emu.americommerce.stats.requests - start >= after_requests)
    action()


async def test_incremental_requests_only_the_pages_that_hold_changes(
    tmp_path: Path, start_emu: StartEmu
) -> None:
    """After 25 scattered changes an incremental run costs about ceil(25 / page) requests."""
    emu = await start_emu(products=600)
    db = tmp_path / "s.db"
    assert (await sync(db, emu)).kind == "full"
    catalog = emu.americommerce.catalog
    since = watermark(db)
    for n, sku in enumerate(list(catalog.skus())[::24]):  # 25 products, 25 distinct milliseconds
        catalog.update(sku, price=1.5, updated_at=since + timedelta(seconds=1, milliseconds=n))
    in_window = sum(
        datetime.fromisoformat(p["updated_at"]) >= since for p in catalog.snapshot().values()
    )
    emu.americommerce.stats.reset()
    result = await sync(db, emu)
    assert result.kind == "incremental" and result.ok, result.error
    # The inclusive cursor re-reads the last product of a page: 10 new, then 9 a page.
    assert in_window == 25
    assert emu.americommerce.stats.requests == 1 + math.ceil((in_window - 10) / 9)
    assert result.totals.items_updated == 25
    assert stored_products(db, "shop") == catalog.snapshot()
    asked = [r.query for r in emu.americommerce.stats.requests_to(PRODUCTS)]
    assert {q["sort"] for q in asked} == {"updated_at,id"}


async def test_many_changes_in_one_millisecond_are_read_by_id_keyset(
    tmp_path: Path, start_emu: StartEmu
) -> None:
    """47 products stamped with one updated_at (a mass update): keyset by id inside it, exact."""
    emu = await start_emu(products=200)
    db = tmp_path / "s.db"
    await sync(db, emu)
    stamp = watermark(db) + timedelta(seconds=5)
    for sku in list(emu.americommerce.catalog.skus())[:47]:
        emu.americommerce.catalog.update(sku, item_name="renamed", updated_at=stamp)
    emu.americommerce.stats.reset()
    result = await sync(db, emu)
    assert result.totals.items_updated == 47
    assert stored_products(db, "shop") == emu.americommerce.catalog.snapshot()
    asked = [r.query for r in emu.americommerce.stats.requests_to(PRODUCTS)]
    inside = [q for q in asked if q.get("updated_at", "").startswith("eq:")]
    assert [q["id"].startswith("gt:") for q in inside] == [True] * 4
    assert len(asked) == 5  # 1 + 4 id-keyset pages of 10, 10, 10, 7 (+0 repeats)


async def test_incremental_run_mutated_midway_converges_after_the_next(
    tmp_path: Path, start_emu: StartEmu
) -> None:
    """Updates, inserts and deletions landing during an incremental run: exact after the next."""
    emu = await start_emu(products=300, latency=0.004)
    db = tmp_path / "s.db"
    await sync(db, emu)
    catalog = emu.americommerce.catalog
    skus = list(catalog.skus())
    for sku in skus[:60]:
        catalog.update(sku, price=2.0)

    def churn() -> None:
        for sku in skus[5:15]:  # already read: they move to the end of the keyset order
            catalog.update(sku, price=3.0)
        for sku in skus[40:44]:  # not read yet: gone before the read reaches them
            catalog.delete(sku)
        for n in range(5):
            catalog.insert(item_number=f"NEW-{n}", item_name=f"new {n}", price=9.0)

    mutator = asyncio.create_task(mutate_when(emu, 2, churn))
    first = await sync(db, emu)
    await mutator
    assert first.ok, first.error
    second = await sync(db, emu)
    assert second.kind == "incremental" and second.ok
    live = stored_products(db, "shop")
    assert {sku: live[sku] for sku in catalog.snapshot()} == catalog.snapshot()
    # Deletions are invisible to incremental runs: the next full run tombstones them.
    assert set(live) - set(catalog.snapshot()) == set(skus[40:44])
    third = await sync(db, emu, "full")
    assert third.ok and third.totals.items_deleted == 4
    assert stored_products(db, "shop") == catalog.snapshot()


async def test_full_run_mutated_midway_verifies_and_is_exact(
    tmp_path: Path, start_emu: StartEmu
) -> None:
    """Deletions shift offsets (and make the last page 404) mid-scan: a keyset id listing with
    `fields` finds what was missed, then exactly the deleted products are tombstoned."""
    emu = await start_emu(products=300, latency=0.004)
    db = tmp_path / "s.db"
    await sync(db, emu)
    catalog = emu.americommerce.catalog
    skus = list(catalog.skus())

    def churn() -> None:
        for sku in skus[:12]:
            catalog.delete(sku)
        catalog.insert(item_number="LATE-1", item_name="late", price=1.0)
        catalog.update(skus[200], item_name="changed mid-run")

    emu.americommerce.stats.reset()
    mutator = asyncio.create_task(mutate_when(emu, 3, churn))
    first = await sync(db, emu, "full", max_concurrency=2)
    await mutator
    assert first.ok, first.error
    assert first.totals.items_deleted == 12
    log = emu.americommerce.stats.requests_to(PRODUCTS)
    assert any(r.status == 404 for r in log)  # page 30 of 300 - 12 + 1: past the end, no error
    listings = [r for r in log if r.query.get("fields") == LISTING]
    assert len(listings) == math.ceil(289 / 10)
    pages = [r for r in log if "id" not in r.query]
    assert sorted(int(r.query["page"]) for r in pages) == list(range(1, 31))
    by_id = [r for r in log if r.query.get("id", "").startswith("eq:")]
    assert 1 <= len(by_id) <= 2  # the products deletions shifted out of view, by id
    assert stored_products(db, "shop") == catalog.snapshot()
    assert tombstoned(db) == set(skus[:12])
    second = await sync(db, emu)
    assert second.kind == "incremental" and second.ok
    assert stored_products(db, "shop") == catalog.snapshot()


async def test_complete_full_run_tombstones_exactly_the_deleted(
    tmp_path: Path, start_emu: StartEmu
) -> None:
    """Between runs 3 products go: the next full run tombstones those 3; its pages and one
    probe (newest by created_at, one trimmed product) prove it, with no listing."""
    emu = await start_emu(products=95)
    db = tmp_path / "s.db"
    await sync(db, emu)
    gone = list(emu.americommerce.catalog.skus())[10:13]
    for sku in gone:
        emu.americommerce.catalog.delete(sku)
    emu.americommerce.stats.reset()
    result = await sync(db, emu, "full")
    assert result.ok and result.totals.items_deleted == 3
    assert tombstoned(db) == set(gone)
    assert emu.americommerce.stats.requests == 10 + 1  # ceil(92 / 10) pages and the probe
    assert probes(emu) == [11] and listings(emu) == 0
    probe = emu.americommerce.stats.log[-1].query
    assert probe == {
        "page": "1", "count": "1", "sort": "-created_at", "fields": "id,item_number,created_at"
    }  # fmt: skip


async def test_watermark_never_passes_an_uncommitted_page(
    tmp_path: Path, start_emu: StartEmu
) -> None:
    """An incremental run failing on its third page leaves the watermark after page two; the next
    run reads the rest and is exact."""
    emu = await start_emu(products=200)
    db = tmp_path / "s.db"
    await sync(db, emu)
    base = watermark(db)
    catalog = emu.americommerce.catalog
    changed = list(catalog.skus())[:40]
    for n, sku in enumerate(changed):
        catalog.update(sku, price=4.0, updated_at=base + timedelta(seconds=1 + n))
    emu.americommerce.faults.add(Fault(kind="status", status=500, after=2, times=None))
    failed = await sync(db, emu)
    assert failed.status == "failed" and failed.totals.pages == 2
    last_of_page_two = catalog.get(changed[18])["updated_at"]
    assert watermark(db) == datetime.fromisoformat(last_of_page_two)
    emu.americommerce.faults.clear()
    assert (await sync(db, emu)).ok
    assert stored_products(db, "shop") == catalog.snapshot()
    assert watermark(db) == datetime.fromisoformat(catalog.get(changed[-1])["updated_at"])
