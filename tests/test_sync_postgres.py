"""End to end on PostgreSQL: the emulator synced into `[store] url`, full then incremental, exact."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from syncd.config.settings import StoreSettings
from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig
from syncd.errors import SourceBusyError
from syncd.runtime import Runtime
from syncd.store.postgres import PostgresStore
from syncd.store.postgres_leases import PostgresLeases
from tests.support import adobe_source, settings_for


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    emulator = Emulator(EmulatorConfig(adobe=AdobeConfig(products=600), seed=5))
    await emulator.start()
    yield emulator
    await emulator.close()


def stored(url: str, *, live: bool = True) -> dict[str, dict[str, Any]]:
    """sku -> payload of the products stored in PostgreSQL (only non-tombstoned if `live`)."""
    where = " WHERE deleted_at IS NULL" if live else ""
    with psycopg.connect(url) as conn:
        return dict(conn.execute(f"SELECT sku, payload FROM products{where}").fetchall())


async def test_full_then_incremental_sync_into_postgres_is_exact(
    emu: Emulator, postgres_url: str, tmp_path: Path
) -> None:
    """A full scan stores the catalog; changes, inserts and deletions then arrive exactly."""
    settings = settings_for(tmp_path / "unused.db", adobe_source(emu, incremental_overlap=0))
    settings = settings.model_copy(update={"store": StoreSettings(url=postgres_url)})
    async with Runtime(settings) as runtime:
        full = await runtime.sync("shop")
        assert (full.kind, full.ok, full.totals.items_created) == ("full", True, 600)
        assert stored(postgres_url) == emu.adobe.catalog.snapshot()

        skus = list(emu.adobe.catalog.skus())
        for sku in skus[:30]:
            emu.adobe.catalog.update(sku, price=2.5)
        emu.adobe.catalog.insert(sku="NEW-1", name="new", price=9.0)
        emu.adobe.stats.reset()
        incremental = await runtime.sync("shop")
        assert (incremental.kind, incremental.ok) == ("incremental", True)
        assert (incremental.totals.items_created, incremental.totals.items_updated) == (1, 30)
        assert emu.adobe.stats.requests < 10  # only the changed pages, not the catalog
        assert stored(postgres_url) == emu.adobe.catalog.snapshot()

        for sku in skus[100:105]:
            emu.adobe.catalog.delete(sku)
        rescan = await runtime.sync("shop", "full")
        assert (rescan.totals.items_deleted, rescan.totals.items_unchanged) == (5, 596)
        assert stored(postgres_url) == emu.adobe.catalog.snapshot()
        assert len(stored(postgres_url, live=False)) == 601  # tombstoned, not removed

        runs = await runtime.store.runs("shop")
        assert [(r.kind, r.status) for r in runs] == [
            ("full", "succeeded"), ("incremental", "succeeded"), ("full", "succeeded"),
        ]  # fmt: skip
        assert runs[0].totals.items_deleted == 5
    # No SQLite file, no flock directory: everything went to PostgreSQL.
    assert list(tmp_path.iterdir()) == []  # noqa: ASYNC240


async def test_a_held_postgres_lease_refuses_a_second_run(
    emu: Emulator, postgres_url: str, tmp_path: Path
) -> None:
    """While another replica holds the source's lease, a sync is refused naming it."""
    settings = settings_for(tmp_path / "unused.db", adobe_source(emu))
    settings = settings.model_copy(update={"store": StoreSettings(url=postgres_url)})
    async with PostgresStore(postgres_url) as store, Runtime(settings) as rt:
        await PostgresLeases(store, 30).claim("shop", "otherhost:42:x")
        with pytest.raises(SourceBusyError, match="otherhost:42:x"):
            await rt.sync("shop")
    assert emu.adobe.stats.requests == 0
