"""Tombstones only from a full scan that provably saw everything, on both platforms (emulator).

A page served empty, short, with another product's sku, or as an old copy makes the scan
incomplete: it verifies by keyset listing, so nothing live is tombstoned and no row takes another
product's payload. When the listing cannot account for every sku either, nothing is tombstoned,
the run says why, and the next run is a full scan that tries again.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from syncd.checkpoint import FullScanCheckpoint
from syncd.completeness import FirstScan, screen
from syncd.emulator import AdobeConfig, AmeriCommerceConfig, Emulator, EmulatorConfig, Fault
from syncd.emulator.platform import PlatformEmulator
from syncd.http import RequestStats
from syncd.runtime import Runtime
from syncd.sources import AdobeCommerceSource, AmeriCommerceSource
from syncd.sources.base import ListingIncomplete
from syncd.store.base import ProductRecord, StoredProduct
from syncd.store.sqlite import SqliteStore
from syncd.sync import SyncResult
from tests.support import ac_source, adobe_source, query, settings_for, stored_products

PRODUCTS = 200  # 20 pages of 10


@dataclass
class World:
    """One emulated platform and a database synced from it."""

    emu: Emulator
    platform: str
    db: Path

    @property
    def store(self) -> PlatformEmulator:
        return self.emu.adobe if self.platform == "adobe" else self.emu.americommerce

    def source(self) -> Any:
        make = adobe_source if self.platform == "adobe" else ac_source
        return make(self.emu, incremental_overlap=0)

    async def sync(self, kind: str | None = "full") -> SyncResult:
        async with Runtime(settings_for(self.db, self.source())) as runtime:
            return await runtime.sync("shop", kind)  # type: ignore[arg-type]

    def catalog(self) -> dict[str, dict[str, Any]]:
        return self.store.catalog.snapshot()  # type: ignore[attr-defined, no-any-return]

    def stored(self) -> dict[str, dict[str, Any]]:
        return stored_products(self.db, "shop")

    def tombstoned(self) -> set[str]:
        rows = query(self.db, "SELECT sku FROM products WHERE deleted_at IS NOT NULL")
        return {r[0] for r in rows}

    def delete(self, *positions: int) -> set[str]:
        catalog = self.store.catalog  # type: ignore[attr-defined]
        skus = list(catalog.skus())
        gone = {skus[p] for p in positions}
        for sku in gone:
            catalog.delete(sku)
        return gone


@pytest.fixture(params=["adobe", "americommerce"])
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    """A catalog of 200 and a good first full sync of it."""
    if request.param == "adobe":
        config = EmulatorConfig(adobe=AdobeConfig(products=PRODUCTS), seed=3)
    else:
        ac = AmeriCommerceConfig(
            products=PRODUCTS, static_tokens=("ac-console-token",), call_limit=100_000
        )
        config = EmulatorConfig(americommerce=ac, seed=3)
    async with Emulator(config) as emu:
        world = World(emu, request.param, tmp_path / "syncd.db")
        first = await world.sync()
        assert first.ok, first.error
        assert world.stored() == world.catalog()
        yield world


async def arm(world: World, fault: Fault) -> None:
    world.store.faults.add(fault)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault("empty_page", page=6), "page 6 of 20 held 0 of 10 products"),
        (Fault("short_page", page=6), "page 6 of 20 held 3 of 10 products"),
        (Fault("duplicate_sku", page=6), "1 skus arrived with another id"),
    ],
)
async def test_a_page_served_empty_short_or_with_another_products_sku_costs_no_live_product(
    world: World, fault: Fault, reason: str
) -> None:
    """Two products deleted, then one middle page served wrong, same total_count: the scan is not
    complete, verifies, tombstones exactly the two deleted, and every row is its product's."""
    gone = world.delete(15, 120)
    await arm(world, fault)
    with capture_logs() as logs:
        result = await world.sync()
    assert result.ok, result.error
    assert world.store.stats.faults_injected == 1
    incomplete = [e for e in logs if e["event"] == "sync.scan_incomplete"]
    assert len(incomplete) == 1 and any(reason in r for r in incomplete[0]["reasons"])
    assert any(e["event"] == "sync.verified" for e in logs)
    assert not [e for e in logs if e["event"] == "sync.tombstones_skipped"]
    assert result.totals.items_deleted == 2 and world.tombstoned() == gone
    assert world.stored() == world.catalog()
    assert result.error is None


async def test_an_empty_middle_page_stops_the_fan_out(world: World) -> None:
    """No offset page is asked for once one came back empty (only those already in flight)."""
    await arm(world, Fault("empty_page", page=3))
    start = len(world.store.stats.log)
    result = await world.sync()
    assert result.ok, result.error
    requests = list(world.store.stats.log)[start:]  # in the order they were answered
    offset = [n for n in (_offset_page(world, r.query) for r in requests) if n is not None]
    # Answered after page 3: what the 3 other workers had in flight when its answer reached
    # syncd, and what they had asked for just before (at most one each), not the 17 left.
    assert len(offset[offset.index(3) + 1 :]) <= 2 * 3, offset
    assert world.stored() == world.catalog()


def _offset_page(world: World, q: dict[str, str]) -> int | None:
    if world.platform == "adobe":
        if "fields" in q or any(k.startswith("searchCriteria[filter_groups]") for k in q):
            return None
        if q.get("searchCriteria[sortOrders][0][field]") != "entity_id":
            return None
        return int(q["searchCriteria[currentPage]"])
    if set(q) - {"page", "count", "sort"} or q.get("sort") != "id":
        return None
    return int(q["page"])


async def test_a_stale_cached_page_never_moves_a_row_back(world: World) -> None:
    """A cache keeps page 4 from one full run and serves it to the next, after a product on it
    was updated and another deleted: the old copy is not written over the newer row, the scan
    verifies, and the database equals the catalog."""
    await arm(world, Fault("stale_page", page=4, times=2))
    kept = await world.sync()  # the cache takes its copy of page 4
    assert kept.ok, kept.error
    catalog = world.store.catalog  # type: ignore[attr-defined]
    skus = list(catalog.skus())
    catalog.update(skus[31], price=1234.5)
    catalog.update(skus[36], price=4321.5)
    world.delete(33)
    between = await world.sync("incremental")  # the update is stored, the deletion is not seen
    assert between.ok, between.error
    with capture_logs() as logs:
        result = await world.sync()
    assert result.ok, result.error
    assert world.store.stats.faults_injected == 2
    assert [e for e in logs if e["event"] == "sync.sku_conflict"]
    assert world.stored() == world.catalog()
    assert world.tombstoned() == {skus[33]}


async def test_when_the_listing_cannot_account_either_nothing_is_tombstoned(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty middle page, and a verification listing that ends early: nothing is tombstoned,
    the run's row and `sync.tombstones_skipped` say why, the watermark is cleared, and the next
    run (a full scan, the listing well again) tombstones exactly the deleted product."""
    gone = world.delete(150)
    await arm(world, Fault("empty_page", page=6))
    kind = AdobeCommerceSource if world.platform == "adobe" else AmeriCommerceSource
    original = kind.list_skus

    async def broken(self: Any, stats: RequestStats) -> AsyncIterator[list[str]]:
        async for skus in original(self, stats):
            yield skus
            raise ListingIncomplete("the sku listing after id 10 held 0 products of 10 asked")

    monkeypatch.setattr(kind, "list_skus", broken)
    with capture_logs() as logs:
        result = await world.sync()
    assert result.ok
    assert result.totals.items_deleted == 0 and world.tombstoned() == set()
    assert result.error is not None and result.error.startswith("tombstones skipped: ")
    assert "page 6 of 20 held 0 of 10 products" in result.error
    assert "held 0 products of 10 asked" in result.error
    (row,) = query(world.db, "SELECT status, error FROM sync_runs ORDER BY id DESC LIMIT 1")
    assert row == ("succeeded", result.error)
    (skipped,) = [e for e in logs if e["event"] == "sync.tombstones_skipped"]
    assert skipped["total"] == PRODUCTS - 1 and skipped["committed"] < PRODUCTS - 1
    assert skipped["short_pages"] == 1
    (state,) = query(world.db, "SELECT watermark, checkpoint FROM source_state")
    assert state == (None, None)
    assert set(world.stored()) - set(world.catalog()) == gone  # still live: not proven gone

    monkeypatch.setattr(kind, "list_skus", original)
    again = await world.sync(None)
    assert again.kind == "full" and again.ok and again.error is None
    assert world.tombstoned() == gone and world.stored() == world.catalog()


async def test_an_empty_listing_page_while_more_remain_is_incomplete(world: World) -> None:
    """The adapters' sku listing: a page with no products while total_count says more remain
    is an error of its own (ListingIncomplete), never the end of the listing."""
    if world.platform == "adobe":
        body = {"items": [], "total_count": 150}
    else:
        body = {"products": [], "total_count": 150}
    world.store.faults.add(Fault("json", body=json.dumps(body), after=2))
    async with Runtime(settings_for(world.db, world.source())) as runtime:
        source = runtime.sources["shop"]
        assert isinstance(source, AdobeCommerceSource | AmeriCommerceSource)
        listed: list[str] = []

        async def listing() -> None:
            async for skus in source.list_skus(RequestStats()):
                listed.extend(skus)

        with pytest.raises(ListingIncomplete, match="held 0 products"):
            await listing()
    assert len(listed) == 20


def record(sku: str, id: int, updated: str = "2026-01-01 00:00:00") -> ProductRecord:
    return ProductRecord(sku, id, None, None, None, None, updated, "{}", sku + str(id))


async def test_a_first_scan_reads_the_stored_view_only_for_a_page_with_a_sku_it_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Into an empty store, page 6 serving page 1's first sku with another id: only page 6 reads
    the stored view (its sku was written), which disputes it, so no row takes another product's
    payload; the verification then finds the product page 6 hid."""
    config = EmulatorConfig(adobe=AdobeConfig(products=PRODUCTS), seed=3)
    views: list[list[str]] = []
    read = SqliteStore.scan_view

    async def spy(self: SqliteStore, source: str, scan_id: int, skus: Any) -> Any:
        views.append(list(skus))
        return await read(self, source, scan_id, skus)

    monkeypatch.setattr(SqliteStore, "scan_view", spy)
    async with Emulator(config) as emu:
        world = World(emu, "adobe", tmp_path / "syncd.db")
        await arm(world, Fault("duplicate_sku", page=6))
        with capture_logs() as logs:
            result = await world.sync()
        assert result.ok, result.error
        assert world.stored() == world.catalog()
        first = next(iter(world.store.catalog.skus()))  # type: ignore[attr-defined]
        (conflict,) = [e for e in logs if e["event"] == "sync.sku_conflict"]
        assert conflict["skus"] == [first]
        assert any(e["event"] == "sync.verified" for e in logs)
        assert [first in skus for skus in views] == [True]


async def test_only_a_clean_first_scan_skips_the_tombstone_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Into an empty store a clean scan has nothing to tombstone (every live row is its own,
    marked) and skips the pass; a first scan that disputed a sku and verified, and a second
    scan, do tombstone."""
    config = EmulatorConfig(adobe=AdobeConfig(products=PRODUCTS), seed=3)
    passes: list[bool] = []
    finish = SqliteStore.finish_full_scan

    async def spy(self: SqliteStore, *args: Any, **kwargs: Any) -> int:
        passes.append(kwargs["tombstone"])
        return await finish(self, *args, **kwargs)

    monkeypatch.setattr(SqliteStore, "finish_full_scan", spy)
    async with Emulator(config) as emu:
        clean = World(emu, "adobe", tmp_path / "clean.db")
        assert (await clean.sync()).ok
        gone = clean.delete(15)
        assert (await clean.sync()).ok and clean.tombstoned() == gone
        doubted = World(emu, "adobe", tmp_path / "doubted.db")
        await arm(doubted, Fault("duplicate_sku", page=6))
        assert (await doubted.sync()).ok
    assert passes == [False, True, True]


def test_a_first_scan_past_its_limit_reads_every_view() -> None:
    """Past `limit` skus the written set is dropped: every page reads the store again."""
    first = FirstScan(limit=3)
    first.add(["a", "b"])
    assert first.untouched(["c"]) and not first.untouched(["b", "c"])
    first.add(["c", "d"])
    assert not first.untouched(["e"]) and not first.written


def test_the_screen_keeps_new_and_same_products_and_disputes_the_rest() -> None:
    """Another id than stored, an older updated_at, or one sku twice with two ids in a page is
    disputed; the same product again is a repeat; a tombstoned row is not compared."""
    stored = {
        "a": StoredProduct(1, "2026-01-01 00:00:00", live=True, seen=True),
        "b": StoredProduct(2, "2026-01-01 00:00:00", live=True, seen=False),
        "c": StoredProduct(3, "2026-02-01 00:00:00", live=True, seen=False),
        "d": StoredProduct(4, "2026-02-01 00:00:00", live=False, seen=False),
    }
    page = [
        record("a", 1),
        record("b", 9),
        record("c", 3),
        record("d", 8),
        record("e", 5),
        record("f", 6),
        record("f", 7),
    ]
    screened = screen(page, stored)
    assert [r.sku for r in screened.keep] == ["a", "d", "e"]
    assert sorted(screened.disputed) == ["b", "c", "f"]
    assert screened.repeated == ["a"]
    assert screened.stored == 3  # a, b, c: d is tombstoned, e and f are not stored


def test_the_screen_leaves_out_what_is_stored_live_with_the_same_content() -> None:
    """A product stored live with the hash that arrived is unchanged: not kept (nothing to
    send), listed to be marked and counted. Another hash, a tombstoned row or no hash read is
    kept; a disputed sku is neither."""
    stored = {
        "same": StoredProduct(1, None, live=True, seen=False, content_hash="same1"),
        "other": StoredProduct(2, None, live=True, seen=False, content_hash="old"),
        "dead": StoredProduct(3, None, live=False, seen=False, content_hash="dead3"),
        "unread": StoredProduct(4, None, live=True, seen=False),
        "moved": StoredProduct(5, None, live=True, seen=False, content_hash="moved9"),
        "again": StoredProduct(6, None, live=True, seen=True, content_hash="again6"),
    }
    page = [record(sku, n) for sku, n in (("same", 1), ("other", 2), ("dead", 3), ("unread", 4))]
    page += [record("moved", 9), record("again", 6), record("new", 7)]
    screened = screen(page, stored)
    assert screened.unchanged == ["same", "again"]
    assert [r.sku for r in screened.keep] == ["other", "dead", "unread", "new"]
    assert screened.disputed == ["moved"] and screened.repeated == ["again"]
    assert screened.stored == 5  # every live row, the dead one aside


async def test_an_incremental_page_never_writes_a_sku_over_another_products_row(
    world: World,
) -> None:
    """A keyset page carrying a stored sku with another product's id: not written, logged (the
    next full scan settles it by sku), and the row stays its own product's."""
    catalog = world.store.catalog  # type: ignore[attr-defined]
    first = next(iter(catalog.skus()))
    impostor = dict(catalog.get(first), id=99_999)
    key = "items" if world.platform == "adobe" else "products"
    world.store.faults.add(Fault("json", body=json.dumps({key: [impostor], "total_count": 1})))
    with capture_logs() as logs:
        result = await world.sync("incremental")
    assert result.ok, result.error
    (conflict,) = [e for e in logs if e["event"] == "sync.sku_conflict"]
    assert conflict["skus"] == [first] and "next full scan" in conflict["consequence"]
    assert world.stored() == world.catalog()
    assert result.totals.items_seen == 1 and result.totals.items_updated == 0


async def test_a_short_page_is_not_checkpointed_so_a_resumed_scan_asks_for_it_again(
    world: World,
) -> None:
    """Page 6 short, then the API fails for good before the verification: the run fails and its
    checkpoint holds every page but 6; the resumed scan asks for page 1 and page 6 only."""
    world.store.faults.add(Fault("short_page", page=6))
    world.store.faults.add(Fault("status", status=500, times=None, after=20))
    failed = await world.sync()
    assert failed.status == "failed"
    (row,) = query(world.db, "SELECT checkpoint FROM source_state")
    done = FullScanCheckpoint.decode(row[0])
    assert done is not None and sorted(done.done) == [n for n in range(1, 21) if n != 6]
    world.store.faults.clear()
    start = len(world.store.stats.log)
    resumed = await world.sync()
    assert resumed.ok, resumed.error
    asked = [_offset_page(world, r.query) for r in list(world.store.stats.log)[start:]]
    assert sorted(n for n in asked if n is not None) == [1, 6]
    assert world.stored() == world.catalog() and world.tombstoned() == set()
