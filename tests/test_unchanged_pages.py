"""Unchanged products are not sent (syncd/completeness.py `screen`, `PageCommit.seen`): a full
scan of an unchanged catalog hands the store no record, only the skus to mark and count, and
ends exact with every product seen; a changed product among them is still written."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import pytest

from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig
from tests.scans import PAGE, Backend, full_run

PRODUCTS = 200


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(EmulatorConfig(adobe=AdobeConfig(products=PRODUCTS), seed=7)) as emulator:
        yield emulator


async def test_a_full_scan_of_an_unchanged_catalog_sends_no_record(
    scan_backend: Backend, emu: Emulator
) -> None:
    """The second full scan, one product repriced since the first: one record sent, the other
    199 marked and counted as unchanged, in the run's row too; the catalog stored exactly."""
    first, _, _ = await full_run(scan_backend, emu)
    assert first.ok, first.error
    catalog = emu.adobe.catalog
    changed = next(iter(catalog.skus()))
    catalog.update(changed, price=4321.5)
    again, store, _ = await full_run(scan_backend, emu)
    assert again.ok, again.error
    assert store.commits == math.ceil(PRODUCTS / PAGE)
    assert sum(sent for sent, _ in store.sent) == 1  # the changed product alone
    assert sum(unchanged for _, unchanged in store.sent) == PRODUCTS - 1
    assert store.marks_after[-1] == PRODUCTS  # every sku seen, sent or not
    totals = again.totals
    assert (totals.items_seen, totals.items_updated, totals.items_unchanged) == (
        PRODUCTS, 1, PRODUCTS - 1
    )  # fmt: skip
    assert totals.items_deleted == 0
    assert scan_backend.rows(
        "SELECT items_seen, items_updated, items_unchanged FROM sync_runs ORDER BY id DESC LIMIT 1"
    ) == [(PRODUCTS, 1, PRODUCTS - 1)]
    assert scan_backend.live_products() == catalog.snapshot()
