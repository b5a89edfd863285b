"""A first scan's marks are implicit (syncd/sync.py `_full`): a scan that began with no live product
wrote every live product there is, so it stores no mark rows, until a resume, a disputed sku or a
verification needs them as rows; each of those stores them first and ends exact."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import pytest

from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig, Fault
from tests.scans import PAGE, Backend, full_run

PRODUCTS = 200


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(EmulatorConfig(adobe=AdobeConfig(products=PRODUCTS), seed=5)) as emulator:
        yield emulator


def stored_marks(logs: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """(reason, marks) of every `sync.marks_stored` event."""
    return [(e["reason"], e["marks"]) for e in logs if e["event"] == "sync.marks_stored"]


async def test_a_first_scan_stores_no_mark_and_ends_exact(
    scan_backend: Backend, emu: Emulator
) -> None:
    """Not one mark row while the scan runs; the checkpoint says the marks are implicit; the
    catalog is stored exactly, nothing tombstoned. The next scan (not a first) marks as before."""
    result, store, logs = await full_run(scan_backend, emu)
    assert result.ok, result.error
    assert store.commits == math.ceil(PRODUCTS / PAGE)
    assert set(store.marks_after) == {0}
    assert all("first_scan_id" in c and "scan_id" not in c for c in store.checkpoints)
    assert stored_marks(logs) == []
    assert result.totals.items_created == PRODUCTS and result.totals.items_deleted == 0
    assert scan_backend.live_products() == emu.adobe.catalog.snapshot()
    again, store, _ = await full_run(scan_backend, emu)
    assert again.ok, again.error
    assert store.marks_after[-1] == PRODUCTS  # every page marked its skus
    assert all("scan_id" in c for c in store.checkpoints)


async def test_a_resumed_first_scan_stores_its_marks_before_going_on(
    scan_backend: Backend, emu: Emulator
) -> None:
    """The fifth commit fails; the resumed scan first stores a mark for each product the first
    attempt wrote, then marks its own pages, and ends with exactly the catalog, nothing
    tombstoned and one `created` entry a product."""
    failed, _, _ = await full_run(scan_backend, emu, fail_at=5)
    assert not failed.ok and "injected" in (failed.error or "")
    written = scan_backend.count("products")
    assert 0 < written < PRODUCTS
    resumed, store, logs = await full_run(scan_backend, emu)
    assert resumed.ok and resumed.kind == "full", resumed.error
    assert stored_marks(logs) == [("the scan resumed", written)]
    assert max(store.marks_after) == PRODUCTS  # its own pages marked, on top
    assert all("scan_id" in c for c in store.checkpoints)
    assert resumed.totals.items_deleted == 0
    assert scan_backend.live_products() == emu.adobe.catalog.snapshot()
    assert scan_backend.rows("SELECT op, count(*) FROM product_changes GROUP BY op") == [
        ("created", PRODUCTS)
    ]
    assert scan_backend.count("full_scan_seen") == 0


async def test_a_dispute_in_a_first_scan_stores_the_marks_then_forgets_the_sku(
    scan_backend: Backend, emu: Emulator
) -> None:
    """Page 6 serves page 1's first sku under its own product's id: the marks are stored (the
    pages before it land first), the sku stops counting as seen, the verification reads it
    again by sku, and the scan ends exact with nothing tombstoned."""
    emu.adobe.faults.add(Fault("duplicate_sku", page=6))
    result, store, logs = await full_run(scan_backend, emu)
    assert result.ok, result.error
    [(reason, marks)] = stored_marks(logs)
    assert reason == "a sku was disputed"
    [(before, own, forgotten)] = store.disputes  # the disputed page's commit
    # Every page before it landed first (its marks are all the products stored), its nine other
    # products are marked, the disputed sku's mark (from page 1) is forgotten.
    assert before == marks and marks % PAGE == 0 and marks > 0
    assert (own, forgotten) == (PAGE - 1, 0)
    # That page wrote its nine, but the run's live row counts the ten it brought, as the
    # run's final row does.
    disputed = store.commits_forgetting[0]
    assert (store.sent[disputed][0], store.arrived[disputed]) == (PAGE - 1, PAGE)
    assert any(e["event"] == "sync.verified" for e in logs)
    assert result.totals.items_deleted == 0
    assert scan_backend.live_products() == emu.adobe.catalog.snapshot()


async def test_a_verified_first_scan_fetches_only_what_it_missed(
    scan_backend: Backend, emu: Emulator
) -> None:
    """Page 6 served empty (the scan stops asking for pages): the marks are stored before the
    verification asks which skus the scan saw, so it fetches only the ones it did not see, not
    the catalog; the scan ends exact."""
    emu.adobe.faults.add(Fault("empty_page", page=6))
    result, _, logs = await full_run(scan_backend, emu)
    assert result.ok, result.error
    [(reason, marks)] = stored_marks(logs)
    assert reason == "the scan is verified" and 0 < marks < PRODUCTS
    fetched = [e["fetched_missing"] for e in logs if e["event"] == "sync.verified"]
    assert fetched == [PRODUCTS - marks]
    assert result.totals.items_deleted == 0
    assert scan_backend.live_products() == emu.adobe.catalog.snapshot()
