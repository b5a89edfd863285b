"""Pages a cache or proxy serves wrong during a full scan: empty, short, with another product's
sku, or as an old copy; and a verification listing that breaks off too.

Each one, under the daemon from a good first sync with two products deleted since: no live product
is tombstoned, no row takes another product's payload, and the deleted ones are tombstoned as soon
as a scan can prove them gone. The outcome is recorded before it is asserted (`FaultLab.finish`),
so a client without these checks records "DATA NOT INTACT" (shown at the end of this file).
"""

from __future__ import annotations

import json
import math

import pytest

from syncd.completeness import Doubts, Screened
from syncd.emulator import Fault
from syncd.store.base import ProductRecord, StoredProduct
from syncd.sync import SyncResult
from tests.faults.lab import FaultLab

PRODUCTS, PAGE = 200, 10
DELETED = (15, 120)  # positions in id order: on page 2 and page 13
MINUTE = 60.0


async def faulted_full_run(lab: FaultLab, fault: Fault) -> SyncResult:
    """A good first sync of 200, churn, two products deleted, `fault` armed, one full run, and
    the data checked (recorded, not asserted)."""
    await lab.start_emulator(products=PRODUCTS)
    await lab.open(lab.source(page_size=PAGE))
    lab.delete_products(*DELETED)
    lab.change_catalog()
    lab.inject(fault)
    result = await lab.sync(kind="full")
    lab.verify()
    return result


@pytest.mark.parametrize(
    ("kind", "scenario", "named"),
    [
        ("empty_page", "empty-middle-page", "page 6 of 20 held 0 of 10 products"),
        ("short_page", "short-middle-page", "page 6 of 20 held 3 of 10 products"),
    ],
)
async def test_an_empty_or_short_middle_page_costs_no_live_product(
    lab: FaultLab, kind: str, scenario: str, named: str
) -> None:
    """Page 6 of 20 served empty or short with the same total_count: the scan is not complete,
    the keyset verification reads what it missed, only the two deleted products are tombstoned."""
    seen = len(lab.logs)
    result = await faulted_full_run(lab, Fault(kind, page=6))  # type: ignore[arg-type]
    await lab.finish(scenario)
    assert result.ok and result.error is None, result.error
    (incomplete,) = lab.events("sync.scan_incomplete", seen)
    assert named in incomplete["reasons"]
    assert lab.events("sync.verified", seen) and not lab.events("sync.tombstones_skipped", seen)
    assert result.totals.items_deleted == len(DELETED)
    # Resources: the pages, the listing (as many pages again) and a batch per listing page that
    # names missed skus, at most; the run well within a minute of the lab's clock.
    pages = math.ceil((PRODUCTS - len(DELETED) + 1) / PAGE)  # 20
    assert result.totals.requests <= 3 * pages
    assert result.duration < MINUTE


async def test_an_empty_middle_page_stops_the_fan_out(lab: FaultLab) -> None:
    """No page is asked for once the empty one is in, but those the workers had already taken."""
    await faulted_full_run(lab, Fault("empty_page", page=3))
    asked = [
        int(r.query["searchCriteria[currentPage]"])
        for r in lab.emu.adobe.stats.log
        if "fields" not in r.query
        and r.query.get("searchCriteria[sortOrders][0][field]") == "entity_id"
        and not any(k.startswith("searchCriteria[filter_groups]") for k in r.query)
    ]
    faulted = asked[20:]  # this run's pages (the first sync asked for 20), as answered
    # After page 3: what the 3 other workers had in flight when its answer reached syncd, and
    # what they had asked for just before (at most one each), not the 17 pages left.
    assert len(faulted[faulted.index(3) + 1 :]) <= 2 * 3, faulted
    check = lab.check()
    assert check.exact, check


async def test_the_same_sku_on_two_pages_never_takes_another_products_row(lab: FaultLab) -> None:
    """Page 6's first product served with page 1's first sku (its own id): not written over the
    page 1 product's row, read again by sku; nothing live tombstoned."""
    seen = len(lab.logs)
    result = await faulted_full_run(lab, Fault("duplicate_sku", page=6))
    await lab.finish("duplicate-sku-pages")
    assert result.ok and result.error is None, result.error
    (conflict,) = lab.events("sync.sku_conflict", seen)
    assert conflict["skus"] == [next(iter(lab.emu.adobe.catalog.skus()))]
    assert result.totals.items_deleted == len(DELETED)
    assert result.duration < MINUTE


async def test_a_stale_cached_page_never_moves_a_row_back(lab: FaultLab) -> None:
    """A cache keeps page 4 from one full run and serves it to the next, after two products on
    it were repriced (a scheduled incremental stored them) and one deleted."""
    await lab.start_emulator(products=PRODUCTS)
    await lab.open(lab.source(page_size=PAGE))
    lab.inject(Fault("stale_page", page=4, times=2))
    kept = await lab.sync(kind="full")  # the cache takes its copy of page 4
    lab.verify()
    catalog = lab.emu.adobe.catalog
    skus = list(catalog.skus())
    catalog.update(skus[31], price=1234.5)
    catalog.update(skus[36], price=4321.5)
    lab.delete_products(33)
    between = await lab.sync(kind="incremental")
    seen = len(lab.logs)
    stale = await lab.sync(kind="full")
    lab.verify()
    await lab.finish("stale-cached-page")
    assert kept.ok and between.ok and stale.ok, (kept.error, between.error, stale.error)
    (conflict,) = lab.events("sync.sku_conflict", seen)
    assert sorted(conflict["skus"]) == sorted([skus[31], skus[36]])
    assert stale.totals.items_deleted == 1
    assert stale.duration < MINUTE


async def test_when_the_listing_breaks_off_too_nothing_is_tombstoned(lab: FaultLab) -> None:
    """Page 6 short, and the verification listing's second page empty while total_count says
    more remain: nothing tombstoned, the reason logged and in the run's row, nothing stored is
    lost; the next run is a full scan and tombstones exactly the two deleted products."""
    await lab.start_emulator(products=PRODUCTS)
    await lab.open(lab.source(page_size=PAGE))
    before = lab.stored()
    lab.delete_products(*DELETED)
    lab.change_catalog()
    # The short page lets every page be fetched: 20 pages, then the listing (no probe).
    listing = json.dumps({"items": [], "total_count": 150})
    lab.inject(Fault("short_page", page=6), Fault("json", body=listing, after=21))
    seen = len(lab.logs)
    skipped = await lab.sync(kind="full")
    lab.unharmed(before)
    runs = len(lab.runs)
    await lab.finish("short-page-and-broken-listing")
    assert skipped.ok and skipped.totals.items_deleted == 0
    assert skipped.error is not None and skipped.error.startswith("tombstones skipped: ")
    assert "page 6 of 20 held 3 of 10 products" in skipped.error
    (event,) = lab.events("sync.tombstones_skipped", seen)
    assert event["short_pages"] == 1 and event["total"] == PRODUCTS - len(DELETED) + 1
    after = lab.runs[runs].result
    assert after is not None and after.kind == "full" and after.totals.items_deleted == 2


# -- a deliberately broken client makes the suite fail ------------------------------------------


@pytest.mark.parametrize(
    ("kind", "scenario"),
    [("empty_page", "empty-middle-page"), ("duplicate_sku", "duplicate-sku-pages")],
)
async def test_without_the_completeness_checks_the_recorded_outcome_is_data_not_intact(
    lab: FaultLab, monkeypatch: pytest.MonkeyPatch, kind: str, scenario: str
) -> None:
    """The same scenario with the completeness check and the sku screen switched off: a client
    that trusts every page tombstones live products or overwrites rows, and the row the lab
    records for the report says DATA NOT INTACT (kept out of the session's results)."""
    monkeypatch.setattr(Doubts, "__bool__", lambda self: False)

    def trusting(records: list[ProductRecord], stored: dict[str, StoredProduct]) -> Screened:
        return Screened(list(records), [], [])

    monkeypatch.setattr("syncd.sync.screen", trusting)
    lab.sink = []
    await faulted_full_run(lab, Fault(kind, page=6))  # type: ignore[arg-type]
    result = await lab.conclude(scenario)
    assert "DATA NOT INTACT" in result.outcome, result
    assert result.tombstoned > 0
    assert lab.sink == [result]
    with pytest.raises(AssertionError, match="DATA NOT INTACT"):
        await lab.finish(scenario)
