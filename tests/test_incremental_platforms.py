"""What every platform's runs must do alike, over both emulators: incremental runs that cost the
pages holding changes, converge under churn and never pass an uncommitted page; full runs that
tombstone only what is gone (one probe when nothing moved, a keyset listing when it did), revive,
resume after a failure, and survive churn during a scan or between its attempts.

What differs between the adapters (request shapes, keysets, time formats) stays in
test_incremental.py (Adobe Commerce) and test_incremental_americommerce.py; the platforms
themselves are described in tests/platforms.py.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest

from syncd.emulator import Fault
from syncd.emulator.americommerce.app import AmeriCommerceEmulator
from syncd.emulator.config import FaultKind
from syncd.store import PageCommit, ProductRecord, SqliteStore, UpsertCounts
from tests.platforms import ADOBE, OpenShop, open_shop_fixture, platform_fixture  # noqa: F401
from tests.support import query, stored_products, until


async def test_failed_run_tombstones_nothing_and_the_next_resumes(
    open_shop: OpenShop,
) -> None:
    """A partial full run deletes nothing; the next skips committed pages and tombstones exactly."""
    shop = await open_shop(300)
    catalog = shop.api.catalog
    await shop.sync()
    gone = list(catalog.skus())[100:104]
    for sku in gone:
        catalog.delete(sku)
    shop.api.faults.add(Fault(kind="status", status=503, after=12, times=None))
    partial = await shop.sync("full", max_concurrency=1)
    assert partial.status == "failed" and "503" in (partial.error or "")
    assert shop.tombstoned() == set()
    committed = partial.totals.pages
    assert committed >= 10
    shop.api.faults.clear()
    shop.api.stats.reset()
    resumed = await shop.sync("full")
    assert resumed.ok, resumed.error
    # Page 1 again for total_count, the pages not committed, and the probe, which finds the
    # catalog as the scan found it: no verification needed.
    assert shop.api.stats.requests == 1 + 30 - committed + 1
    assert shop.probes() == [shop.api.stats.requests] and shop.listings() == 0
    assert resumed.totals.items_deleted == 4
    assert shop.tombstoned() == set(gone)
    assert stored_products(shop.db, "shop") == catalog.snapshot()


async def test_reappearing_product_is_revived(open_shop: OpenShop) -> None:
    """A tombstoned sku that comes back loses its deleted_at and keeps its row."""
    shop = await open_shop(40)
    catalog = shop.api.catalog
    await shop.sync()
    sku = next(iter(catalog.skus()))
    catalog.delete(sku)
    assert (await shop.sync("full")).totals.items_deleted == 1
    catalog.insert(**shop.platform.product(sku, "back again", 5.0))
    await shop.sync()
    assert query(shop.db, "SELECT deleted_at, name FROM products WHERE sku = ?", sku) == [
        (None, "back again")
    ]


async def test_incremental_run_never_tombstones(open_shop: OpenShop) -> None:
    """Only full runs may conclude that a product is gone."""
    shop = await open_shop(40)
    await shop.sync()
    shop.api.catalog.delete(next(iter(shop.api.catalog.skus())))
    result = await shop.sync()
    assert result.kind == "incremental" and result.totals.items_deleted == 0
    assert shop.tombstoned() == set()


async def test_first_full_sync_with_churn_misses_nothing(open_shop: OpenShop) -> None:
    """On an empty database the same churn would leave the slid product unread forever (no
    incremental run reads an old updated_at): the verification fetches it."""
    shop = await open_shop(300)
    catalog = shop.api.catalog
    skus = list(catalog.skus())

    def churn() -> None:
        catalog.delete(skus[0])
        catalog.insert(**shop.platform.product("NEW-1", "new", 1.0))

    shop.api.before_request(3, churn)
    result = await shop.sync(max_concurrency=1)
    assert result.kind == "full" and result.ok, result.error
    assert stored_products(shop.db, "shop") == catalog.snapshot()
    assert shop.tombstoned() == {skus[0]}  # stored from page 1 before it went


async def test_incremental_with_nothing_changed_costs_one_request(
    open_shop: OpenShop,
) -> None:
    """No product updated since the watermark: one request, which finds none."""
    shop = await open_shop(600)
    await shop.sync()
    shop.api.stats.reset()
    result = await shop.sync()
    assert result.kind == "incremental" and result.ok, result.error
    assert shop.api.stats.requests == result.totals.requests == 1
    assert result.totals.items_seen == 0


async def test_delete_plus_insert_during_a_full_scan_tombstones_exactly_the_deleted(
    open_shop: OpenShop,
) -> None:
    """A deletion and an insertion mid-scan keep total_count the same while the deletion slides a
    product into a page already read: the probe sees the new product, the keyset listing finds
    the slid one, and only the deleted product is tombstoned."""
    shop = await open_shop(300)
    await shop.sync()
    catalog = shop.api.catalog
    skus = list(catalog.skus())

    def churn() -> None:
        catalog.delete(skus[0])  # page 1, already read: skus[20] slides from page 3 to page 2
        catalog.insert(**shop.platform.product("NEW-1", "new", 1.0))

    shop.api.stats.reset()
    shop.api.before_request(3, churn)
    result = await shop.sync("full", max_concurrency=1)
    assert result.ok, result.error
    assert shop.tombstoned() == {skus[0]} and result.totals.items_deleted == 1
    assert stored_products(shop.db, "shop") == catalog.snapshot()
    # 30 pages (the last one, shifted, holds NEW-1), the probe, the listing (300 skus: 30 pages,
    # the last told by total_count), and one fetch for skus[20], which the shift hid.
    assert shop.probes() == [31] and shop.listings() == 30
    assert shop.api.stats.requests == 30 + 1 + 30 + 1
    assert shop.fetched() == [shop.platform.fetch_key(skus, 20)]
    second = await shop.sync()
    assert second.kind == "incremental" and second.ok
    assert stored_products(shop.db, "shop") == catalog.snapshot()


async def test_a_product_inserted_and_deleted_again_during_the_scan_still_verifies(
    open_shop: OpenShop,
) -> None:
    """Insert X and delete A, every page reports the same total, then X goes before the probe:
    no product created since the scan began is left, but the total now is one short, so the
    scan still verifies (a probe counting new products alone would conclude 'unchanged')."""
    shop = await open_shop(300)
    await shop.sync()
    catalog = shop.api.catalog
    skus = list(catalog.skus())

    def churn() -> None:
        catalog.delete(skus[5])
        catalog.insert(**shop.platform.product("NEW-1", "new", 1.0))

    shop.api.stats.reset()
    shop.api.before_request(3, churn)
    shop.api.before_request(31, lambda: catalog.delete("NEW-1"))  # right before the probe
    result = await shop.sync("full", max_concurrency=1)
    assert result.ok, result.error
    assert shop.probes() == [31] and shop.listings() > 0
    # NEW-1 was read by the (shifted) last page, then deleted: it is gone, so tombstoned too.
    assert shop.tombstoned() == {skus[5], "NEW-1"}
    assert stored_products(shop.db, "shop") == catalog.snapshot()


async def test_churn_between_a_failed_attempt_and_its_resume(open_shop: OpenShop) -> None:
    """A deletion plus an insertion while the scan is interrupted: the resumed scan probes from
    the scan's original start, verifies, and tombstones exactly the deleted product."""
    shop = await open_shop(300)
    await shop.sync()
    catalog = shop.api.catalog
    skus = list(catalog.skus())
    shop.api.faults.add(Fault(kind="status", status=503, after=12, times=None))
    partial = await shop.sync("full", max_concurrency=1)
    assert partial.status == "failed" and partial.totals.pages == 12
    shop.api.faults.clear()
    catalog.delete(skus[3])  # page 1, committed: skus[120] slides into committed page 12
    catalog.insert(**shop.platform.product("NEW-X", "new", 1.0))
    shop.api.stats.reset()
    resumed = await shop.sync("full")
    assert resumed.ok, resumed.error
    assert shop.tombstoned() == {skus[3]}
    assert stored_products(shop.db, "shop") == catalog.snapshot()
    # Page 1 again, the 18 pages left (the last one holds NEW-X), the probe, 30 listing pages,
    # and skus[120], which slid into committed page 12.
    assert shop.api.stats.requests == 1 + 18 + 1 + 30 + 1
    assert shop.fetched() == [shop.platform.fetch_key(skus, 120)]


async def test_incremental_requests_only_the_pages_that_hold_changes(open_shop: OpenShop) -> None:
    """After 25 scattered changes (25 distinct milliseconds) an incremental run costs the pages
    that hold them, and is exact."""
    shop = await open_shop(600)
    assert (await shop.sync()).kind == "full"
    catalog = shop.api.catalog
    since, _ = shop.watermark()
    for n, sku in enumerate(list(catalog.skus())[::24]):  # 25 products
        catalog.update(sku, price=1.5, updated_at=since + timedelta(seconds=1, milliseconds=n))
    # The watermark is the full scan's start: only the changes are after it.
    assert sum(shop.updated_at(sku) >= since for sku in catalog.skus()) == 25
    shop.api.stats.reset()
    result = await shop.sync()
    assert result.kind == "incremental" and result.ok, result.error
    pages = 1 + math.ceil((25 - 10) / shop.platform.per_incremental_page)
    assert shop.api.stats.requests == pages == 3
    assert result.totals.items_updated == 25
    assert stored_products(shop.db, "shop") == catalog.snapshot()
    if isinstance(shop.api, AmeriCommerceEmulator):  # the keyset is asked for by its sort
        asked = shop.api.stats.requests_to("/api/v1/products")
        assert {r.query["sort"] for r in asked} == {"updated_at,id"}


async def test_incremental_run_mutated_midway_converges_after_the_next(
    open_shop: OpenShop,
) -> None:
    """Updates, inserts and deletions landing during an incremental run: exact after the next
    incremental run, and the next full run tombstones the deleted products."""
    shop = await open_shop(300, latency=0.004)
    await shop.sync()
    catalog = shop.api.catalog
    skus = list(catalog.skus())
    for sku in skus[:60]:
        catalog.update(sku, price=2.0)

    def churn() -> None:
        for sku in skus[5:15]:  # already read: they move to the end of the keyset order
            catalog.update(sku, price=3.0)
        for sku in skus[40:44]:  # not read yet: gone before the read reaches them
            catalog.delete(sku)
        for n in range(5):
            shop.insert(f"NEW-{n}", f"new {n}", 9.0)

    mutator = asyncio.create_task(shop.mutate_when(2, churn))
    first = await shop.sync()
    await mutator
    assert first.ok, first.error
    second = await shop.sync()
    assert second.kind == "incremental" and second.ok
    live = stored_products(shop.db, "shop")
    assert {sku: live[sku] for sku in catalog.snapshot()} == catalog.snapshot()
    # Deletions are invisible to incremental runs: the next full run tombstones them.
    assert set(live) - set(catalog.snapshot()) == set(skus[40:44])
    third = await shop.sync("full")
    assert third.ok and third.totals.items_deleted == 4
    assert stored_products(shop.db, "shop") == catalog.snapshot()


async def test_full_run_mutated_midway_verifies_and_is_exact(open_shop: OpenShop) -> None:
    """Deletions shift offsets mid-scan (AmeriCommerce: the last page runs past the end, 404): a
    keyset listing finds what was missed, then exactly the deleted products are tombstoned."""
    shop = await open_shop(300, latency=0.004)
    await shop.sync()
    catalog = shop.api.catalog
    skus = list(catalog.skus())

    def churn() -> None:
        for sku in skus[:12]:
            catalog.delete(sku)
        shop.insert("LATE-1", "late", 1.0)
        shop.rename(skus[200], "changed mid-run")

    shop.api.stats.reset()
    mutator = asyncio.create_task(shop.mutate_when(3, churn))
    first = await shop.sync("full", max_concurrency=2)
    await mutator
    assert first.ok, first.error
    assert first.totals.items_deleted == 12
    assert shop.listings() == math.ceil(289 / 10)  # the verification: keys only, a page per 10
    assert stored_products(shop.db, "shop") == catalog.snapshot()
    assert shop.tombstoned() == set(skus[:12])
    if isinstance(shop.api, AmeriCommerceEmulator):  # pages by number, slid products by id
        log = shop.api.stats.requests_to("/api/v1/products")
        assert any(r.status == 404 for r in log)  # page 30 of 289: past the end, no error
        pages = [r for r in log if "id" not in r.query]
        assert sorted(int(r.query["page"]) for r in pages) == list(range(1, 31))
        assert 1 <= len(shop.fetched()) <= 2
    second = await shop.sync()
    assert second.kind == "incremental" and second.ok
    assert stored_products(shop.db, "shop") == catalog.snapshot()


PROBES = {
    "adobe": {
        "searchCriteria[sortOrders][0][field]": "created_at",
        "searchCriteria[sortOrders][0][direction]": "DESC",
        "searchCriteria[pageSize]": "1",
        "searchCriteria[currentPage]": "1",
        "fields": "items[id,sku,created_at],total_count",
    },
    "americommerce": {
        "page": "1", "count": "1", "sort": "-created_at", "fields": "id,item_number,created_at"
    },
}  # fmt: skip
"""The probe as each platform's request: the newest product by created_at, trimmed to its keys."""


async def test_unchanged_catalog_full_run_costs_its_pages_and_one_probe(
    open_shop: OpenShop,
) -> None:
    """Deletions between runs only: ceil(N/P) pages, then one probe (newest by created_at, one
    trimmed item), no listing; exactly the deleted products are tombstoned."""
    shop = await open_shop(300)
    await shop.sync()
    catalog = shop.api.catalog
    gone = list(catalog.skus())[40:43]
    for sku in gone:
        catalog.delete(sku)
    shop.api.stats.reset()
    result = await shop.sync("full")
    assert result.ok and result.totals.items_deleted == 3
    assert shop.api.stats.requests == result.totals.requests == 30 + 1
    assert shop.probes() == [31] and shop.listings() == 0
    assert shop.api.stats.log[-1].query == PROBES[shop.platform.name]
    assert shop.tombstoned() == set(gone)
    assert stored_products(shop.db, "shop") == catalog.snapshot()


async def test_watermark_never_passes_an_uncommitted_page(open_shop: OpenShop) -> None:
    """An incremental run failing on its third page leaves the watermark at the last product of
    page two; the next run reads the rest and is exact."""
    shop = await open_shop(200)
    await shop.sync()
    base, _ = shop.watermark()
    catalog = shop.api.catalog
    changed = list(catalog.skus())[:40]
    for n, sku in enumerate(changed):
        catalog.update(sku, price=4.0, updated_at=base + timedelta(seconds=1 + n))
    shop.api.faults.add(Fault(kind="status", status=500, after=2, times=None))
    failed = await shop.sync()
    assert failed.status == "failed" and failed.totals.pages == 2
    last_of_page_two = changed[10 + shop.platform.per_incremental_page - 1]
    since, after_id = shop.watermark()
    assert since == shop.updated_at(last_of_page_two)
    if shop.platform is ADOBE:  # its keyset goes on after the last id read
        assert after_id == catalog.get(last_of_page_two)["id"]
    unread = changed[changed.index(last_of_page_two) + 1]
    assert stored_products(shop.db, "shop")[unread] != catalog.get(unread)
    shop.api.faults.clear()
    assert (await shop.sync()).ok
    assert stored_products(shop.db, "shop") == catalog.snapshot()
    assert shop.watermark()[0] == shop.updated_at(changed[-1])


@pytest.mark.parametrize("renames", [45, 90])
@pytest.mark.parametrize("kind", ["empty_page", "short_page", "stale_page"])
async def test_a_cache_serving_keyset_pages_empty_short_or_old_loses_no_change(
    open_shop: OpenShop, kind: FaultKind, renames: int
) -> None:
    """A cache or proxy in front of the incremental reads (every keyset page but the first served
    empty, cut to a third, or as it was the first time): the watermark moves only past what was
    read, so no change is skipped, only delayed; nothing is tombstoned or overwritten by an older
    copy, and once the cache is gone the store equals the catalog. With 90 changes (nine pages)
    Adobe's read goes on in two id ranges side by side, each behind the cache."""
    shop = await open_shop(120)
    catalog = shop.api.catalog
    await shop.sync()
    shop.api.faults.add(Fault(kind=kind, changes=True, after=1, times=None))
    shop.api.stats.reset()
    behind = False
    for round_ in range(3):
        for sku in list(catalog.skus())[round_ * 20 : round_ * 20 + renames]:
            shop.rename(sku, f"{sku} round {round_}")
        run = await shop.sync(page_size=10)
        assert run.ok, run.error
        behind |= stored_products(shop.db, "shop") != catalog.snapshot()
    assert shop.api.stats.faults_injected >= 3  # the cache served keyset pages, not only the first
    if shop.platform is ADOBE and renames > 45:  # the read was split into id ranges
        assert any("lteq" in r.query.values() for r in shop.api.stats.log)
    # An empty page ends a keyset read, holding the rest back until a later run (a cut page
    # does not: the keyset goes on after its last product).
    assert behind or kind != "empty_page"
    shop.api.faults.clear()
    for _ in range(3):  # the cache gone: the reads catch up from where the watermark stands
        assert (await shop.sync(page_size=10)).ok
    assert shop.tombstoned() == set()
    assert stored_products(shop.db, "shop") == catalog.snapshot()


async def test_the_next_keyset_page_is_asked_for_while_a_page_commits(
    open_shop: OpenShop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each incremental page's commit is held until the store has been asked for the page after
    it: the read goes on while the database writes (a run that read one page only after
    committing the last would wait here until `until` gives up), and the run is exact."""
    shop = await open_shop(200)
    await shop.sync()
    base, _ = shop.watermark()
    catalog = shop.api.catalog
    for n, sku in enumerate(list(catalog.skus())[:30]):
        catalog.update(sku, price=4.0, updated_at=base + timedelta(seconds=1 + n))
    pages = 1 + math.ceil((30 - 10) / shop.platform.per_incremental_page)
    commit = SqliteStore.commit_page
    committed = 0

    async def held(
        store: SqliteStore,
        source: str,
        records: Sequence[ProductRecord],
        now: datetime,
        page: PageCommit,
    ) -> UpsertCounts:
        nonlocal committed
        if page.watermark is not None and committed + 1 < pages:
            await until(lambda: shop.api.stats.requests >= committed + 2, limit=5)
        counts = await commit(store, source, records, now, page)
        committed += page.watermark is not None
        return counts

    monkeypatch.setattr(SqliteStore, "commit_page", held)
    shop.api.stats.reset()
    result = await shop.sync()
    assert result.ok and result.kind == "incremental", result.error
    assert committed == result.totals.pages == shop.api.stats.requests == pages
    assert stored_products(shop.db, "shop") == catalog.snapshot()


async def test_a_long_incremental_read_mutated_midway_converges(open_shop: OpenShop) -> None:
    """100 changes, pages of 10 (Adobe Commerce reads the rest in two id ranges side by side,
    AmeriCommerce one keyset): products already read change again, unread ones change or go and
    new ones arrive while it reads. Within ceil(100/P) + 2 requests and never a product left
    stale before the watermark; exact after the next run, and the next full run tombstones
    exactly the deleted products."""
    shop = await open_shop(600, latency=0.002)
    await shop.sync()
    base, _ = shop.watermark()
    catalog = shop.api.catalog
    skus = list(catalog.skus())
    changed = skus[::6][:100]
    for n, sku in enumerate(changed):
        catalog.update(sku, price=4.0, updated_at=base + timedelta(seconds=1 + n))
    gone = [changed[70], changed[95]]

    def churn() -> None:
        # Stamped after every change above (which the test dates ahead of the clock), as a
        # store's own clock would stamp them.
        later = base + timedelta(seconds=200)
        for n, sku in enumerate([*changed[2:5], *changed[60:62], *changed[-3:]]):
            catalog.update(sku, price=5.0, updated_at=later + timedelta(seconds=n))
        for sku in gone:
            catalog.delete(sku)
        for n in range(3):
            product = shop.platform.product(f"LATE-{n}", f"late {n}", 3.0)
            catalog.insert(**product, updated_at=later + timedelta(seconds=10 + n))

    shop.api.stats.reset()
    shop.api.before_request(5, churn)
    first = await shop.sync()
    assert first.ok and first.kind == "incremental", first.error
    per = shop.platform.per_incremental_page
    assert shop.api.stats.requests <= 1 + math.ceil((100 - 10 + 3 + 8) / per) + 2
    mark, _ = shop.watermark()
    live = stored_products(shop.db, "shop")
    behind = [sku for sku, product in catalog.snapshot().items() if live.get(sku) != product]
    assert all(shop.updated_at(sku) >= mark for sku in behind)
    assert (await shop.sync()).ok
    live = stored_products(shop.db, "shop")
    assert {sku: live[sku] for sku in catalog.snapshot()} == catalog.snapshot()
    assert set(live) - set(catalog.snapshot()) == set(gone)
    full = await shop.sync("full")
    assert full.ok and full.totals.items_deleted == 2
    assert stored_products(shop.db, "shop") == catalog.snapshot()
