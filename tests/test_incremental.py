"""Adobe Commerce incremental runs, convergence under mutation, tombstones and resume (emulator on
loopback); what both platforms share is in test_incremental_platforms.py."""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from syncd.clock import Clock
from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig, Fault
from syncd.runtime import Runtime
from syncd.sources.adobe_commerce import format_magento_time
from syncd.sync import SyncResult
from tests.clocks import FakeClock
from tests.support import adobe_source, query, settings_for, stored_products

StartEmu = Callable[..., Awaitable[Emulator]]
LISTING = "items[id,sku],total_count"
GROUP0 = "searchCriteria[filter_groups][0][filters][0]"
GROUP1 = "searchCriteria[filter_groups][1][filters]"


@pytest.fixture
async def start_emu() -> AsyncIterator[StartEmu]:
    """Start emulators (the real clock unless given one, calm tie order) closed at teardown."""
    emulators: list[Emulator] = []

    async def start(clock: Clock | None = None, **adobe: object) -> Emulator:
        config = EmulatorConfig(adobe=AdobeConfig(**adobe), seed=11)  # type: ignore[arg-type]
        emu = Emulator(config, clock)
        await emu.start()
        emulators.append(emu)
        return emu

    yield start
    for emu in emulators:
        await emu.close()


async def sync(
    db: Path, emu: Emulator, kind: str | None = None, clock: Clock | None = None, **source: Any
) -> SyncResult:
    source.setdefault("incremental_overlap", 0)
    async with Runtime(settings_for(db, adobe_source(emu, **source)), clock) as runtime:
        return await runtime.sync("shop", kind)  # type: ignore[arg-type]


def tombstoned(db: Path) -> set[str]:
    return {r[0] for r in query(db, "SELECT sku FROM products WHERE deleted_at IS NOT NULL")}


def listings(emu: Emulator) -> int:
    return sum(r.query.get("fields") == LISTING for r in emu.adobe.stats.log)


def watermark(db: Path) -> datetime:
    (row,) = query(db, "SELECT watermark FROM source_state WHERE source='shop'")
    return datetime.fromisoformat(json.loads(row[0])["since"])


async def test_many_changes_in_one_second_are_all_read(tmp_path: Path, start_emu: StartEmu) -> None:
    """More same-second changes than fit a page: the keyset read steps through them all."""
    emu = await start_emu(products=200)
    db = tmp_path / "s.db"
    await sync(db, emu)
    for sku in list(emu.adobe.catalog.skus())[:47]:
        emu.adobe.catalog.update(sku, name="renamed")
    emu.adobe.stats.reset()
    result = await sync(db, emu)
    assert result.totals.items_updated == 47
    assert emu.adobe.stats.requests == math.ceil(47 / 10)  # one keyset walks through the second
    assert stored_products(db, "shop") == emu.adobe.catalog.snapshot()


async def test_an_interrupted_verification_leaves_no_marks_the_next_one_trusts(
    tmp_path: Path, start_emu: StartEmu
) -> None:
    """The verification fails half-way; a product it had already listed is deleted; the resumed
    scan verifies again, under its own marks, and tombstones that product too."""
    emu = await start_emu(products=300)
    db = tmp_path / "s.db"
    await sync(db, emu)
    catalog = emu.adobe.catalog
    skus = list(catalog.skus())

    def churn() -> None:
        catalog.delete(skus[0])
        catalog.insert(sku="NEW-1", name="new", price=1.0)

    emu.adobe.before_request(3, churn)
    # 30 pages, the probe, then 5 listing pages and the batch for skus[20] get through.
    emu.adobe.faults.add(Fault(kind="status", status=503, after=30 + 1 + 6, times=None))
    failed = await sync(db, emu, "full", max_concurrency=1)
    assert failed.status == "failed" and listings(emu) >= 5
    assert tombstoned(db) == set()
    emu.adobe.faults.clear()
    catalog.delete(skus[30])  # listed (and marked) by the failed verification
    resumed = await sync(db, emu, "full")
    assert resumed.ok, resumed.error
    assert tombstoned(db) == {skus[0], skus[30]}
    assert stored_products(db, "shop") == catalog.snapshot()


def age_checkpoint(db: Path, seconds: float) -> None:
    """Move the stored checkpoint's scan start `seconds` into the past."""
    (row,) = query(db, "SELECT checkpoint FROM source_state WHERE source='shop'")
    checkpoint = json.loads(row[0])
    started = datetime.fromisoformat(checkpoint["started"]) - timedelta(seconds=seconds)
    checkpoint["started"] = started.isoformat()
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE source_state SET checkpoint = ? WHERE source='shop'", (json.dumps(checkpoint),)
        )


async def test_an_interrupted_full_run_is_resumed_by_the_next_scheduled_run(
    tmp_path: Path, start_emu: StartEmu
) -> None:
    """A --full run fails at page 13 although a watermark exists: the next run without a kind
    (the schedule's) is full, asks only the pages left, and the one after is incremental."""
    emu = await start_emu(products=300)
    db = tmp_path / "s.db"
    await sync(db, emu)
    emu.adobe.faults.add(Fault(kind="status", status=503, after=12, times=None))
    partial = await sync(db, emu, "full", max_concurrency=1)
    assert partial.status == "failed" and partial.totals.pages == 12
    emu.adobe.faults.clear()
    emu.adobe.stats.reset()
    resumed = await sync(db, emu)
    assert resumed.kind == "full" and resumed.ok, resumed.error
    assert emu.adobe.stats.requests == 1 + 30 - 12 + 1  # page 1, the 18 left, the probe
    assert query(db, "SELECT checkpoint FROM source_state") == [(None,)]
    assert (await sync(db, emu)).kind == "incremental"


async def test_a_scan_that_keeps_failing_stops_holding_back_incremental_runs(
    tmp_path: Path, start_emu: StartEmu
) -> None:
    """A page that fails every time: after three failed full runs in a row, scheduled runs are
    incremental again (logged sync.resume_deferred) and read the changes; a --full run still
    resumes the scan, and once the page heals it finishes it."""
    emu = await start_emu(products=300)
    db = tmp_path / "s.db"
    await sync(db, emu)
    emu.adobe.faults.add(Fault(kind="status", status=503, after=12, times=None))
    assert (await sync(db, emu, "full", max_concurrency=1)).status == "failed"
    for _ in range(2):  # the schedule resumes it, and it fails again
        again = await sync(db, emu, max_concurrency=1)
        assert (again.kind, again.status) == ("full", "failed")
    emu.adobe.faults.clear()
    changed = next(iter(emu.adobe.catalog.skus()))
    emu.adobe.catalog.update(changed, price=1.25)
    with capture_logs() as logs:
        deferred = await sync(db, emu)
    assert (deferred.kind, deferred.ok) == ("incremental", True)
    assert [e["failed_runs"] for e in logs if e["event"] == "sync.resume_deferred"] == [3]
    assert stored_products(db, "shop")[changed]["price"] == 1.25
    assert query(db, "SELECT checkpoint IS NOT NULL FROM source_state") == [(1,)]
    finished = await sync(db, emu, "full")
    assert finished.ok and finished.totals.pages < 30  # resumed, not started over
    assert query(db, "SELECT checkpoint FROM source_state") == [(None,)]


@pytest.mark.parametrize(
    ("max_age", "age", "resumed"),
    [
        (None, 6 * 3600 - 60, True),  # the default: 6 hours
        (None, 6 * 3600 + 60, False),
        (600.0, 540, True),
        (600.0, 660, False),
    ],
)
async def test_a_checkpoint_older_than_its_max_age_starts_the_scan_over(
    tmp_path: Path, start_emu: StartEmu, max_age: float | None, age: float, resumed: bool
) -> None:
    """Committed pages older than checkpoint_max_age are not trusted: the next run scans from
    page 1 (and sees a stock change on them that did not bump updated_at); a younger one resumes."""
    emu = await start_emu(products=300)
    db = tmp_path / "s.db"
    options: dict[str, Any] = {} if max_age is None else {"checkpoint_max_age": max_age}
    await sync(db, emu, **options)
    emu.adobe.faults.add(Fault(kind="status", status=503, after=12, times=None))
    assert (await sync(db, emu, "full", max_concurrency=1, **options)).status == "failed"
    emu.adobe.faults.clear()
    age_checkpoint(db, age)
    stock = list(emu.adobe.catalog.skus())[15]  # on page 2, committed
    emu.adobe.catalog.update(stock, qty=0, is_in_stock=False, touch=False)
    emu.adobe.stats.reset()
    with capture_logs() as logs:
        result = await sync(db, emu, **options)
    assert result.kind == "full" and result.ok, result.error
    discarded = [e for e in logs if e["event"] == "sync.checkpoint_discarded"]
    if resumed:
        assert emu.adobe.stats.requests == 1 + 18 + 1 and not discarded
    else:
        assert emu.adobe.stats.requests == 30 + 1
        assert "more than checkpoint_max_age" in discarded[0]["reason"]
        assert stored_products(db, "shop") == emu.adobe.catalog.snapshot()


@pytest.mark.parametrize("per_second", [1, 5, 10])
async def test_incremental_costs_exactly_the_pages_that_hold_the_changes(
    tmp_path: Path, start_emu: StartEmu, per_second: int
) -> None:
    """100 changes, `per_second` of them in each second, pages of 10: exactly ceil(100/10)
    requests, each a keyset strictly after the last product read (updated_at gteq T AND
    (updated_at gt T OR entity_id gt ID)), so no second is read twice. One request at a time:
    with more, a read this long is split in two id ranges (test_keyset_split.py)."""
    emu = await start_emu(products=600)
    db = tmp_path / "s.db"
    await sync(db, emu)
    since = watermark(db)
    catalog = emu.adobe.catalog
    changed = list(catalog.skus())[::6][:100]
    for n, sku in enumerate(changed):
        catalog.update(sku, price=1.5, updated_at=since + timedelta(seconds=5 + n // per_second))
    stamp = format_magento_time(since)
    assert sum(p["updated_at"] >= stamp for p in catalog.snapshot().values()) == 100
    emu.adobe.stats.reset()
    result = await sync(db, emu, max_concurrency=1)
    assert result.kind == "incremental" and result.ok, result.error
    assert emu.adobe.stats.requests == result.totals.requests == 10
    assert (result.totals.items_seen, result.totals.items_updated) == (100, 100)
    assert stored_products(db, "shop") == catalog.snapshot()
    first, *rest = [r.query for r in emu.adobe.stats.log]
    assert (first[f"{GROUP0}[field]"], first[f"{GROUP0}[value]"]) == ("updated_at", stamp)
    assert first[f"{GROUP0}[condition_type]"] == "gteq"
    assert not any(key.startswith(GROUP1) for key in first)
    order = sorted((catalog.get(sku) for sku in changed), key=lambda p: (p["updated_at"], p["id"]))
    for k, asked in enumerate(rest, 1):
        last = order[10 * k - 1]  # the last product of the page before
        assert (asked[f"{GROUP0}[value]"], asked[f"{GROUP0}[condition_type]"]) == (
            last["updated_at"], "gteq"
        )  # fmt: skip
        assert [asked[f"{GROUP1}[0][{key}]"] for key in ("field", "value", "condition_type")] == [
            "updated_at", last["updated_at"], "gt"
        ]  # fmt: skip
        assert [asked[f"{GROUP1}[1][{key}]"] for key in ("field", "value", "condition_type")] == [
            "entity_id", str(last["id"]), "gt"
        ]  # fmt: skip
        assert asked["searchCriteria[currentPage]"] == "1"
        assert asked["searchCriteria[sortOrders][0][field]"] == "updated_at"
        assert asked["searchCriteria[sortOrders][1][field]"] == "entity_id"


async def test_the_sku_listing_stops_on_total_count(tmp_path: Path, start_emu: StartEmu) -> None:
    """300 products (a multiple of the page size) are listed in 30 requests, not 31: the last
    page is told by total_count (products after the last id), not by a short or empty page."""
    emu = await start_emu(products=300)
    db = tmp_path / "s.db"
    await sync(db, emu)
    emu.adobe.stats.reset()
    emu.adobe.before_request(3, lambda: emu.adobe.catalog.delete(next(emu.adobe.catalog.skus())))
    emu.adobe.before_request(4, lambda: emu.adobe.catalog.insert(sku="NEW-1", price=1.0))
    result = await sync(db, emu, "full", max_concurrency=1)
    assert result.ok, result.error
    assert listings(emu) == 30
    listed = [r.query for r in emu.adobe.stats.log if r.query.get("fields") == LISTING]
    assert [q[f"{GROUP0}[value]"] for q in listed[:3]] == ["0", "11", "21"]
    assert {q[f"{GROUP0}[condition_type]"] for q in listed} == {"gt"}


async def test_the_overlap_rereads_changes_committed_behind_the_watermark(
    tmp_path: Path, start_emu: StartEmu
) -> None:
    """A change stamped 20 s before the watermark (a late commit, a web node's clock behind) is
    read by a run with incremental_overlap=30, which asks from watermark - 30 s; and a product
    created inside the overlap before a full scan makes that scan verify."""
    clock = FakeClock()  # the emulator's time and syncd's: the scan starts when the test says
    emu = await start_emu(clock, products=300)
    db = tmp_path / "s.db"
    await sync(db, emu, clock=clock, incremental_overlap=30)
    since = watermark(db)
    catalog = emu.adobe.catalog
    late = list(catalog.skus())[7]
    catalog.update(late, price=2.5, updated_at=since - timedelta(seconds=20))
    emu.adobe.stats.reset()
    result = await sync(db, emu, clock=clock, incremental_overlap=30)
    assert result.kind == "incremental" and result.totals.items_updated == 1
    first = emu.adobe.stats.log[0].query
    assert first[f"{GROUP0}[value]"] == format_magento_time(since - timedelta(seconds=30))
    assert stored_products(db, "shop") == catalog.snapshot()
    # The probe looks as far back: a product created 20 s before the scan began may have been
    # committed during it, so the scan verifies.
    emu.adobe.stats.reset()
    clock.advance(60)
    catalog.insert(sku="JUST-BEFORE", price=1.0, created_at=clock.now() - timedelta(seconds=20))
    full = await sync(db, emu, "full", clock=clock, incremental_overlap=30)
    assert full.ok and listings(emu) == math.ceil(301 / 10)
    emu.adobe.stats.reset()  # without the overlap the same product is older than the scan
    assert (await sync(db, emu, "full", clock=clock, incremental_overlap=0)).ok
    assert listings(emu) == 0


async def test_a_stock_change_is_invisible_to_incremental_runs_and_found_by_the_next_full(
    tmp_path: Path, start_emu: StartEmu
) -> None:
    """Magento does not bump updated_at on a stock change: an incremental run cannot see it, the
    next full run finds it by content hash (one update, the rest unchanged)."""
    emu = await start_emu(products=50)
    db = tmp_path / "s.db"
    await sync(db, emu)
    catalog = emu.adobe.catalog
    sku = list(catalog.skus())[9]
    catalog.update(sku, qty=0, is_in_stock=False, touch=False)
    incremental = await sync(db, emu)
    assert incremental.kind == "incremental" and incremental.totals.items_updated == 0
    assert stored_products(db, "shop")[sku] != catalog.get(sku)
    full = await sync(db, emu, "full")
    assert (full.totals.items_updated, full.totals.items_unchanged) == (1, 49)
    assert stored_products(db, "shop") == catalog.snapshot()


async def test_a_deletion_during_an_incremental_run(tmp_path: Path, start_emu: StartEmu) -> None:
    """Changed products deleted before the read reaches them are simply not read, and nothing is
    tombstoned; the run is otherwise exact, and the next full run tombstones exactly them."""
    emu = await start_emu(products=600)  # none updated in the second the watermark falls in
    db = tmp_path / "s.db"
    await sync(db, emu)
    catalog = emu.adobe.catalog
    skus = list(catalog.skus())
    since = watermark(db)
    for n, sku in enumerate(skus[:60]):
        catalog.update(sku, price=2.0, updated_at=since + timedelta(seconds=1 + n))
    gone = skus[40:44]  # on keyset page 5, not read yet when they go
    emu.adobe.stats.reset()

    def delete_them() -> None:
        for sku in gone:
            catalog.delete(sku)

    emu.adobe.before_request(2, delete_them)
    result = await sync(db, emu)
    assert result.kind == "incremental" and result.ok, result.error
    assert result.totals.items_deleted == 0 and tombstoned(db) == set()
    assert emu.adobe.stats.requests == math.ceil(56 / 10)
    live = stored_products(db, "shop")
    assert {sku: live[sku] for sku in catalog.snapshot()} == catalog.snapshot()
    assert set(live) - set(catalog.snapshot()) == set(gone)
    full = await sync(db, emu, "full")
    assert full.ok and full.totals.items_deleted == 4 and tombstoned(db) == set(gone)
    assert stored_products(db, "shop") == catalog.snapshot()
