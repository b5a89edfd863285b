"""AmeriCommerce end to end: the real engine, client, throttle and store against the emulator; what
both platforms share is in test_sync_platforms.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from syncd.clock import Clock
from syncd.config import load_settings
from syncd.emulator import AmeriCommerceConfig, Emulator, EmulatorConfig, Fault
from syncd.errors import ConfigError
from syncd.runtime import Runtime
from syncd.sources.americommerce import to_record
from syncd.sources.americommerce_query import (
    any_of,
    batches,
    changed_params,
    filterable,
    format_ac_time,
    next_cursor,
    parse_ac_time,
)
from syncd.sources.base import Cursor
from syncd.store import ProductRecord
from syncd.sync import SyncResult
from tests.clocks import FakeClock, VirtualClock
from tests.support import ac_source, query, settings_for, stored_products

TOKEN = "ac-console-token"
PRODUCTS = "/api/v1/products"
StartEmu = Callable[..., Awaitable[Emulator]]


@pytest.fixture
async def start_emu() -> AsyncIterator[StartEmu]:
    """Start AmeriCommerce emulators (an admin-console token, no call limit unless asked)."""
    emulators: list[Emulator] = []

    async def start(clock: Clock | None = None, **ac: object) -> Emulator:
        ac.setdefault("static_tokens", (TOKEN,))
        ac.setdefault("call_limit", 100_000)
        config = EmulatorConfig(americommerce=AmeriCommerceConfig(**ac), seed=3)  # type: ignore[arg-type]
        emu = Emulator(config, clock=clock)
        await emu.start()
        emulators.append(emu)
        return emu

    yield start
    for emu in emulators:
        await emu.close()


async def sync(
    db: Path, emu: Emulator, kind: str | None = None, clock: Clock | None = None, **source: Any
) -> SyncResult:
    async with Runtime(settings_for(db, ac_source(emu, **source)), clock=clock) as runtime:
        return await runtime.sync("shop", kind)  # type: ignore[arg-type]


@pytest.mark.parametrize("utc_offset", [-300, 330])
async def test_columns_are_extracted_and_times_normalised_to_utc(
    tmp_path: Path, start_emu: StartEmu, utc_offset: int
) -> None:
    """sku = item_number, status = product_status_id, no type_id; updated_at as UTC with ms."""
    emu = await start_emu(products=5, utc_offset_minutes=utc_offset)
    catalog = emu.americommerce.catalog
    sku = next(iter(catalog.skus()))
    catalog.update(sku, updated_at=datetime(2026, 3, 1, 4, 5, 6, 789000, tzinfo=UTC))
    item = catalog.get(sku)
    assert not item["updated_at"].endswith("Z")  # the store writes its local time and offset
    await sync(tmp_path / "s.db", emu)
    row = query(
        tmp_path / "s.db",
        "SELECT id, name, price, status, type_id, updated_at FROM products WHERE sku = ?",
        sku,
    )
    assert row == [
        (item["id"], item["item_name"], item["price"], item["product_status_id"], None,
         "2026-03-01T04:05:06.789Z")
    ]  # fmt: skip


async def test_no_cache_header_reads_past_the_store_cache(
    tmp_path: Path, start_emu: StartEmu
) -> None:
    """A product changed seconds after a sync is seen by the next one: the store's GET cache
    (30 s here) is never used, because every request says Cache-Control: no-cache."""
    emu = await start_emu(products=30)
    db = tmp_path / "s.db"
    await sync(db, emu)
    sku = next(iter(emu.americommerce.catalog.skus()))
    emu.americommerce.catalog.update(sku, item_name="Renamed", touch=False)
    again = await sync(db, emu, "full")
    assert again.totals.items_updated == 1
    assert stored_products(db, "shop")[sku]["item_name"] == "Renamed"
    assert emu.americommerce.stats.cache_hits == 0


async def test_page_one_answering_404_fails_and_tombstones_nothing(
    tmp_path: Path, start_emu: StartEmu
) -> None:
    """404 past the end ends paging, but page 1 always exists: its 404 is an error, not 'empty'."""
    emu = await start_emu(products=40)
    db = tmp_path / "s.db"
    await sync(db, emu)
    emu.americommerce.faults.add(Fault(kind="status", status=404))
    result = await sync(db, emu, "full")
    assert result.status == "failed"
    assert "page 1" in (result.error or "") and "404" in (result.error or "")
    assert query(db, "SELECT count(*) FROM products WHERE deleted_at IS NULL") == [(40,)]


async def test_store_at_its_call_limit_sees_no_429(tmp_path: Path, start_emu: StartEmu) -> None:
    """5 calls per 10 s and 4 workers, on one fake clock: 20 pages and the probe take 5 windows
    and no 429."""
    clock = VirtualClock(advance="auto")
    emu = await start_emu(clock, products=200, call_limit=5)
    start = clock.monotonic()
    try:
        result = await sync(tmp_path / "s.db", emu, clock=clock)
    finally:
        await clock.close()
    assert result.ok, result.error
    assert emu.americommerce.stats.rate_limited == 0 and result.totals.rate_limited == 0
    assert result.totals.requests == 20 + 1
    # 21 calls need 5 windows: the first starts with the run, each later one is waited for; the
    # clock moves only when every request on the wire has been served, so the figure is exact.
    assert clock.monotonic() - start == 40.0
    assert stored_products(tmp_path / "s.db", "shop") == emu.americommerce.catalog.snapshot()


@pytest.mark.parametrize("retry_after_format", ["seconds", "http-date"])
async def test_window_spent_by_another_app_is_waited_out(
    tmp_path: Path, start_emu: StartEmu, retry_after_format: str
) -> None:
    """Another app spent the whole window first: one 429, its Retry-After (seconds or HTTP-date)
    is honoured, and the rest of the sync paces itself without another 429."""
    clock = FakeClock()
    emu = await start_emu(clock, products=100, call_limit=5, retry_after_format=retry_after_format)
    async with aiohttp.ClientSession() as other_app:
        for _ in range(5):
            async with other_app.get(emu.url + PRODUCTS, headers={"X-AC-Auth-Token": TOKEN}):
                pass
    result = await sync(tmp_path / "s.db", emu, clock=clock)
    assert result.ok, result.error
    assert emu.americommerce.stats.rate_limited == 1 and result.totals.rate_limited == 1
    assert stored_products(tmp_path / "s.db", "shop") == emu.americommerce.catalog.snapshot()


# -- the pure parts: datetimes, record mapping, the keyset cursor, URL batches ----------------


def test_store_datetimes_are_read_with_their_offset_or_refused() -> None:
    """Trimmed milliseconds and offsets parse exactly; a value without offset needs the setting."""
    local = parse_ac_time("2014-03-19T13:31:47.92-05:00", None)
    assert local == datetime(2014, 3, 19, 18, 31, 47, 920000, tzinfo=UTC)
    assert format_ac_time(local) == "2014-03-19T18:31:47.920Z"
    assert parse_ac_time("2014-05-12T00:00:00.0Z", None) == datetime(2014, 5, 12, tzinfo=UTC)
    with pytest.raises(ValueError, match="no UTC offset; set naive_time_offset"):
        parse_ac_time("2014-03-19T13:31:47", None)
    plus_two = timezone(timedelta(hours=2))
    assert parse_ac_time("2014-03-19T13:31:47", plus_two).hour == 11
    with pytest.raises(ValueError, match="'last tuesday' is not an ISO-8601 datetime"):
        parse_ac_time("last tuesday", None)


def test_unusable_products_are_named() -> None:
    """A product without item_number, or with an unreadable updated_at, says which and why."""
    with pytest.raises(ValueError, match=r"without an item_number .*id=7"):
        to_record({"id": 7, "item_name": "x"}, None)
    with pytest.raises(ValueError, match=r"'A-1': updated_at 'soon' is not an ISO-8601"):
        to_record({"id": 1, "item_number": "A-1", "updated_at": "soon"}, None)


def _records(*stamps_and_ids: tuple[str, int]) -> list[ProductRecord]:
    return [
        to_record({"id": i, "item_number": f"S-{i}", "updated_at": stamp}, None)
        for stamp, i in stamps_and_ids
    ]


def test_keyset_cursor_moves_by_millisecond_and_by_id_inside_a_crowded_one() -> None:
    """Inclusive at the last millisecond; id keyset when one millisecond fills the page; then
    strictly after it."""
    start = Cursor(datetime(2026, 1, 1, tzinfo=UTC))
    a, b = "2026-01-02T00:00:00.001Z", "2026-01-02T00:00:00.002Z"
    mixed = _records((a, 5), (a, 9), (b, 3))
    assert next_cursor(start, mixed, more=True) == Cursor(datetime.fromisoformat(b))
    crowded = _records((a, 5), (b, 1), (b, 2))
    after = next_cursor(start, crowded, more=True)
    assert after == Cursor(datetime.fromisoformat(b), after_id=2)
    assert changed_params(after, 3) == {
        "page": "1", "count": "3", "sort": "updated_at,id",
        "updated_at": f"eq:{b}", "id": "gt:2",
    }  # fmt: skip
    assert next_cursor(after, _records((b, 4)), more=False) == Cursor(
        datetime.fromisoformat(b), exclusive=True
    )
    assert changed_params(Cursor(datetime.fromisoformat(b), exclusive=True), 3)["updated_at"] == (
        f"gt:{b}"
    )


def test_filter_batches_fit_one_url_and_risky_skus_are_spotted() -> None:
    """Batches stay under the query budget; skus the AND/OR syntax would split are not filtered."""
    skus = [f"SKU-{n:020d}" for n in range(100)]
    groups = batches(skus, 100)
    assert sum(len(g) for g in groups) == 100 and len(groups) > 1
    assert all(len(any_of("item_number", g)["item_number"]) <= 1500 for g in groups)
    assert filterable("ACM-000123") and filterable("gt:5") and filterable("BRAND/OR-1")
    assert not filterable("Salt AND Pepper") and not filterable(" padded")


def test_bad_americommerce_settings_name_the_field(tmp_path: Path) -> None:
    """check-config: one line per bad AmeriCommerce key, with the value and what was expected."""
    path = tmp_path / "syncd.toml"
    path.write_text(
        '[[sources]]\nname = "shop"\nkind = "americommerce"\nbase_url = "https://x.example"\n'
        "call_limit_reserve = -1\nnaive_time_offset = 2000\ncall_window = 0\n"
        '[sources.auth]\nstatic_token = "secret-console-token"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    problems = caught.value.problems
    assert len(problems) == 3
    assert any(
        p.startswith("sources[0] (shop).call_limit_reserve: -1 is invalid") for p in problems
    )
    assert any(
        p.startswith("sources[0] (shop).naive_time_offset: 2000 is invalid") for p in problems
    )
    assert any(p.startswith("sources[0] (shop).call_window: 0 is invalid") for p in problems)
    assert "secret-console-token" not in str(caught.value)
