"""Page commits in flight (syncd/commit_window.py): commits that finish out of order never let a
checkpoint claim a page whose own commit has not succeeded, and a resumed scan ends exact."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from syncd.checkpoint import FullScanCheckpoint
from syncd.commit_window import CommitWindow
from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig
from syncd.errors import StoreError
from syncd.runtime import Runtime
from syncd.store import PageCommit, ProductRecord, UpsertCounts
from syncd.sync import SyncEngine
from tests.support import (
    InterceptedStore,
    adobe_source,
    query,
    settings_for,
    stored_products,
)


async def test_claims_only_confirmed_pages_whatever_order_the_commits_finish_in() -> None:
    window = CommitWindow(3, {1})
    gates = {n: asyncio.get_running_loop().create_future() for n in (2, 3, 4)}
    counted: list[int] = []

    async def write(n: int) -> UpsertCounts:
        return await gates[n]  # type: ignore[no-any-return]

    await window.add(2, ["a"], write(2), lambda c: counted.append(c.created))
    assert window.claims(3) == {1, 3}  # page 2 is in flight: not claimed by page 3's checkpoint
    await window.add(3, ["b"], write(3), lambda c: counted.append(c.created))
    assert window.overlaps(["x", "b"]) and not window.overlaps(["c"])
    gates[3].set_result(UpsertCounts(created=3))
    adding = asyncio.ensure_future(window.add(4, ["c"], write(4), lambda c: counted.append(9)))
    await asyncio.sleep(0)
    assert not adding.done()  # three in flight: the window is full until one finishes...
    gates[2].set_exception(StoreError("page 2 refused"))
    with pytest.raises(StoreError, match="page 2 refused"):
        await adding  # ...and a failed one stops the scan
    assert window.confirmed == {1, 3} and counted == [3]
    assert window.claims(None) == {1, 3}  # never the failed page
    gates[4].set_result(UpsertCounts(created=1))
    await window.abandon()  # what is still in flight ends and is counted
    assert window.confirmed == {1, 3, 4} and counted == [3, 9]


async def test_depth_one_waits_for_each_commit() -> None:
    window = CommitWindow(1, ())
    order: list[str] = []

    async def write(name: str) -> UpsertCounts:
        order.append(name)
        return UpsertCounts(updated=1)

    await window.add(1, ["a"], write("p1"), lambda c: order.append("counted p1"))
    assert window.confirmed == {1} and window.claims(2) == {1, 2}
    await window.add(2, ["a"], write("p2"), lambda c: order.append("counted p2"))
    assert order == ["p1", "counted p1", "p2", "counted p2"]


class ShuffledStore(InterceptedStore):
    """A store that runs three commits at once and lets them reach the database in a random
    order (a random number of event-loop turns before each), failing one of them; after each
    commit it records the stored checkpoint with the skus stored at that moment."""

    commit_depth = 3

    def __init__(self, inner: Any, db: Path, rng: random.Random, fail_at: int | None) -> None:
        super().__init__(inner, fail_at)
        self._db = db
        self._rng = rng
        self.stored_checkpoints: list[tuple[str, set[str]]] = []

    async def before_write(self, records: Sequence[ProductRecord], commit: PageCommit) -> None:
        for _ in range(self._rng.randrange(0, 40)):
            await asyncio.sleep(0)

    async def after_write(
        self, source: str, records: Sequence[ProductRecord], commit: PageCommit
    ) -> None:
        state = await self._inner.source_state(source)
        if state.checkpoint is not None:
            skus = {row[0] for row in query(self._db, "SELECT sku FROM products")}
            self.stored_checkpoints.append((state.checkpoint, skus))


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(EmulatorConfig(adobe=AdobeConfig(products=200), seed=5)) as emulator:
        yield emulator


def pages_of(emu: Emulator, size: int) -> dict[int, set[str]]:
    """Page number -> the skus the scan reads on it (Adobe pages are in entity_id order)."""
    ordered = sorted(emu.adobe.catalog.snapshot().items(), key=lambda item: int(item[1]["id"]))
    return {
        n + 1: {sku for sku, _ in ordered[n * size : (n + 1) * size]}
        for n in range((len(ordered) + size - 1) // size)
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_out_of_order_commits_never_checkpoint_an_uncommitted_page(
    tmp_path: Path, emu: Emulator, seed: int
) -> None:
    db = tmp_path / "syncd.db"
    settings = settings_for(db, adobe_source(emu, page_size=10, max_concurrency=4))
    pages = pages_of(emu, 10)
    async with Runtime(settings) as runtime:
        store = ShuffledStore(runtime.store, db, random.Random(seed), fail_at=9)
        engine = SyncEngine(store, runtime.clock)
        result = await engine.run(runtime.sources["shop"], "full")
    assert not result.ok and "injected" in (result.error or "")
    assert len(store.stored_checkpoints) >= 8
    for text, stored in store.stored_checkpoints:
        checkpoint = FullScanCheckpoint.decode(text)
        assert checkpoint is not None
        for number in checkpoint.done:
            assert pages[number] <= stored, f"page {number} claimed but not committed"
    # The resumed scan (commits in order this time) ends with exactly the catalog.
    async with Runtime(settings) as runtime:
        again = await runtime.sync("shop")
    assert again.ok and again.kind == "full", again.error
    assert stored_products(db, "shop") == emu.adobe.catalog.snapshot()
    assert query(db, "SELECT count(*) FROM product_changes") == [(200,)]
