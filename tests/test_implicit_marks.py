"""A first scan's marks are implicit (syncd/sync.py `_full`): a scan that began with no live product
wrote every live product there is, so it stores no mark rows, until a resume, a disputed sku or a
verification needs them as rows; each of those stores them first and ends exact."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig, Fault
from syncd.errors import StoreError
from syncd.runtime import Runtime
from syncd.store import PageCommit, ProductRecord, UpsertCounts
from syncd.sync import SyncEngine, SyncResult
from tests.support import adobe_source, query, settings_for, stored_products

PRODUCTS, PAGE = 200, 10


class WatchedStore:
    """The runtime's store, with the records sent and the mark rows counted at every page
    commit; the commit numbered `fail_at` fails before it reaches the database."""

    def __init__(self, inner: Any, db: Path, fail_at: int | None = None) -> None:
        self._inner = inner
        self._db = db
        self._fail_at = fail_at
        self.commits = 0
        self.marks_after: list[int] = []
        self.products_after: list[int] = []
        self.sent: list[tuple[int, int]] = []  # (records, unchanged skus) of each commit
        self.checkpoints: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def commit_page(
        self, source: str, records: Sequence[ProductRecord], now: datetime, commit: PageCommit
    ) -> UpsertCounts:
        self.commits += 1
        self.sent.append((len(records), len(commit.seen)))
        if self.commits == self._fail_at:
            raise StoreError("injected: this page's commit failed")
        counts: UpsertCounts = await self._inner.commit_page(source, records, now, commit)
        self.marks_after.append(query(self._db, "SELECT count(*) FROM full_scan_seen")[0][0])
        self.products_after.append(query(self._db, "SELECT count(*) FROM products")[0][0])
        if commit.checkpoint:
            self.checkpoints.append(json.loads(commit.checkpoint))
        return counts


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(EmulatorConfig(adobe=AdobeConfig(products=PRODUCTS), seed=5)) as emulator:
        yield emulator


async def full_run(
    db: Path, emu: Emulator, fail_at: int | None = None
) -> tuple[SyncResult, WatchedStore, list[dict[str, Any]]]:
    """One full run of the emulator's catalog through a `WatchedStore`, with its log events."""
    settings = settings_for(db, adobe_source(emu, page_size=PAGE, max_concurrency=4))
    with capture_logs() as logs:
        async with Runtime(settings) as runtime:
            store = WatchedStore(runtime.store, db, fail_at)
            result = await SyncEngine(store, runtime.clock).run(runtime.sources["shop"], "full")
    return result, store, [dict(e) for e in logs]


def stored_marks(logs: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """(reason, marks) of every `sync.marks_stored` event."""
    return [(e["reason"], e["marks"]) for e in logs if e["event"] == "sync.marks_stored"]


async def test_a_first_scan_stores_no_mark_and_ends_exact(tmp_path: Path, emu: Emulator) -> None:
    """Not one mark row while the scan runs; the checkpoint says the marks are implicit; the
    catalog is stored exactly, nothing tombstoned. The next scan (not a first) marks as before."""
    db = tmp_path / "syncd.db"
    result, store, logs = await full_run(db, emu)
    assert result.ok, result.error
    assert store.commits == math.ceil(PRODUCTS / PAGE)
    assert set(store.marks_after) == {0}
    assert all("first_scan_id" in c and "scan_id" not in c for c in store.checkpoints)
    assert stored_marks(logs) == []
    assert result.totals.items_created == PRODUCTS and result.totals.items_deleted == 0
    assert stored_products(db, "shop") == emu.adobe.catalog.snapshot()
    again, store, _ = await full_run(db, emu)
    assert again.ok, again.error
    assert store.marks_after[-1] == PRODUCTS  # every page marked its skus
    assert all("scan_id" in c for c in store.checkpoints)


async def test_a_resumed_first_scan_stores_its_marks_before_going_on(
    tmp_path: Path, emu: Emulator
) -> None:
    """The fifth commit fails; the resumed scan first stores a mark for each product the first
    attempt wrote, then marks its own pages, and ends with exactly the catalog, nothing
    tombstoned and one `created` entry a product."""
    db = tmp_path / "syncd.db"
    failed, _, _ = await full_run(db, emu, fail_at=5)
    assert not failed.ok and "injected" in (failed.error or "")
    written = query(db, "SELECT count(*) FROM products")[0][0]
    assert 0 < written < PRODUCTS
    resumed, store, logs = await full_run(db, emu)
    assert resumed.ok and resumed.kind == "full", resumed.error
    assert stored_marks(logs) == [("the scan resumed", written)]
    assert store.marks_after[0] > written  # its own first page marked, on top
    assert all("scan_id" in c for c in store.checkpoints)
    assert resumed.totals.items_deleted == 0
    assert stored_products(db, "shop") == emu.adobe.catalog.snapshot()
    assert query(db, "SELECT op, count(*) FROM product_changes GROUP BY op") == [
        ("created", PRODUCTS)
    ]
    assert query(db, "SELECT count(*) FROM full_scan_seen") == [(0,)]


async def test_a_dispute_in_a_first_scan_stores_the_marks_then_forgets_the_sku(
    tmp_path: Path, emu: Emulator
) -> None:
    """Page 6 serves page 1's first sku under its own product's id: the marks are stored (the
    pages before it land first), the sku stops counting as seen, the verification reads it
    again by sku, and the scan ends exact with nothing tombstoned."""
    emu.adobe.faults.add(Fault("duplicate_sku", page=6))
    db = tmp_path / "syncd.db"
    result, store, logs = await full_run(db, emu)
    assert result.ok, result.error
    [(reason, marks)] = stored_marks(logs)
    assert reason == "a sku was disputed"
    at = next(i for i, n in enumerate(store.marks_after) if n)  # the disputed page's commit
    assert at > 0 and marks == store.products_after[at - 1]  # every page before it landed
    # Its nine other products marked, the disputed sku's mark (from page 1) forgotten.
    assert store.marks_after[at] == marks + PAGE - 2
    assert any(e["event"] == "sync.verified" for e in logs)
    assert result.totals.items_deleted == 0
    assert stored_products(db, "shop") == emu.adobe.catalog.snapshot()


async def test_a_verified_first_scan_fetches_only_what_it_missed(
    tmp_path: Path, emu: Emulator
) -> None:
    """Page 6 served empty (the scan stops asking for pages): the marks are stored before the
    verification asks which skus the scan saw, so it fetches only the ones it did not see, not
    the catalog; the scan ends exact."""
    emu.adobe.faults.add(Fault("empty_page", page=6))
    db = tmp_path / "syncd.db"
    result, _, logs = await full_run(db, emu)
    assert result.ok, result.error
    [(reason, marks)] = stored_marks(logs)
    assert reason == "the scan is verified" and 0 < marks < PRODUCTS
    fetched = [e["fetched_missing"] for e in logs if e["event"] == "sync.verified"]
    assert fetched == [PRODUCTS - marks]
    assert result.totals.items_deleted == 0
    assert stored_products(db, "shop") == emu.adobe.catalog.snapshot()
