"""What every platform's runs must do alike, over both emulators: tombstones only from full runs,
revival, resume after a failure, churn during a scan or between its attempts (verified by keyset
listing), and the cost of an idle incremental.

What differs between the adapters (request shapes, keysets, time formats) stays in
test_incremental.py (Adobe Commerce) and test_incremental_americommerce.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from syncd.config import SourceSettings
from syncd.daemon import Runtime
from syncd.emulator import AdobeConfig, AmeriCommerceConfig, Emulator, EmulatorConfig, Fault
from syncd.emulator.adobe.app import AdobeEmulator
from syncd.emulator.americommerce.app import AmeriCommerceEmulator
from syncd.store.base import RunKind
from syncd.sync import SyncResult
from tests.support import ac_source, adobe_source, query, settings_for, stored_products

Api = AdobeEmulator | AmeriCommerceEmulator
ADOBE_GROUP0 = "searchCriteria[filter_groups][0][filters][0]"


@dataclass(frozen=True)
class Platform:
    """What differs between the platforms here: the emulator, the source, the catalog's field
    names for a new product, and how the request log shows a probe and a sku listing."""

    name: str
    config: Callable[[int], EmulatorConfig]
    source: Callable[..., SourceSettings]
    api: Callable[[Emulator], Api]
    product: Callable[[str, str, float], dict[str, Any]]
    is_probe: Callable[[dict[str, str]], bool]
    listing: str
    fetched: Callable[[Api], list[str]]
    """What the verification fetched by key, in request order (Adobe: skus, AmeriCommerce: ids)."""
    fetch_key: Callable[[list[str], int], str]
    """How the product at `index` of the seeded catalog's skus shows in `fetched`."""


ADOBE = Platform(
    "adobe",
    lambda n: EmulatorConfig(adobe=AdobeConfig(products=n), seed=11),
    adobe_source,
    lambda emu: emu.adobe,
    lambda sku, name, price: {"sku": sku, "name": name, "price": price},
    lambda q: q.get("searchCriteria[sortOrders][0][field]") == "created_at",
    "items[id,sku],total_count",
    lambda api: [
        r.query[f"{ADOBE_GROUP0}[value]"]
        for r in api.stats.log
        if r.query.get(f"{ADOBE_GROUP0}[field]") == "sku"
    ],
    lambda skus, index: skus[index],
)
AMERICOMMERCE = Platform(
    "americommerce",
    lambda n: EmulatorConfig(
        americommerce=AmeriCommerceConfig(
            products=n, static_tokens=("ac-console-token",), call_limit=100_000
        ),
        seed=11,
    ),
    ac_source,
    lambda emu: emu.americommerce,
    lambda sku, name, price: {"item_number": sku, "item_name": name, "price": price},
    lambda q: q.get("sort") == "-created_at",
    "id,item_number",
    lambda api: [r.query["id"] for r in api.stats.log if r.query.get("id", "").startswith("eq:")],
    lambda skus, index: f"eq:{index + 1}",  # the seeded catalog's ids count from 1
)


@dataclass
class Shop:
    """One platform's emulator, its API and the database a test syncs it into."""

    platform: Platform
    emu: Emulator
    api: Api
    db: Path

    async def sync(self, kind: RunKind | None = None, **source: Any) -> SyncResult:
        source.setdefault("incremental_overlap", 0)
        settings = settings_for(self.db, self.platform.source(self.emu, **source))
        async with Runtime(settings) as runtime:
            return await runtime.sync("shop", kind)

    def probes(self) -> list[int]:
        """Positions (1-based) in the request log of the catalog probes."""
        return [n for n, r in enumerate(self.api.stats.log, 1) if self.platform.is_probe(r.query)]

    def listings(self) -> int:
        return sum(r.query.get("fields") == self.platform.listing for r in self.api.stats.log)

    def fetched(self) -> list[str]:
        return self.platform.fetched(self.api)

    def tombstoned(self) -> set[str]:
        rows = query(self.db, "SELECT sku FROM products WHERE deleted_at IS NOT NULL")
        return {r[0] for r in rows}


OpenShop = Callable[[int], Awaitable[Shop]]


@pytest.fixture(params=[ADOBE, AMERICOMMERCE], ids=lambda p: p.name)
def platform(request: pytest.FixtureRequest) -> Platform:
    chosen: Platform = request.param
    return chosen


@pytest.fixture
async def open_shop(platform: Platform, tmp_path: Path) -> AsyncIterator[Callable[[int], Any]]:
    """Start the platform's emulator (real clock) with `n` products; closed at teardown."""
    emulators: list[Emulator] = []

    async def start(products: int) -> Shop:
        emu = Emulator(platform.config(products))
        await emu.start()
        emulators.append(emu)
        return Shop(platform, emu, platform.api(emu), tmp_path / "s.db")

    yield start
    for emu in emulators:
        await emu.close()


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
