"""AmeriCommerce end to end: the real engine, client, throttle and store against the emulator."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from syncd.clock import Clock
from syncd.config import load_settings
from syncd.daemon import Runtime
from syncd.emulator import AmeriCommerceConfig, Emulator, EmulatorConfig, Fault
from syncd.errors import ConfigError
from syncd.logging import configure_logging
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


def product_requests(emu: Emulator) -> list[dict[str, str]]:
    return [r.query for r in emu.americommerce.stats.requests_to(PRODUCTS)]


async def test_full_sync_stores_every_product_once_as_received(
    tmp_path: Path, start_emu: StartEmu
) -> None:
    """237 products in pages of 10: each page once, sorted by id, none past the end, then the
    probe (the newest product by created_at): 25 requests."""
    emu = await start_emu(products=237)
    db = tmp_path / "s.db"
    result = await sync(db, emu)
    assert result.ok, result.error
    assert stored_products(db, "shop") == emu.americommerce.catalog.snapshot()
    assert query(db, "SELECT count(*), count(DISTINCT sku) FROM products") == [(237, 237)]
    t = result.totals
    assert (t.pages, t.items_seen, t.items_created, t.requests, t.rate_limited) == (
        24, 237, 237, 25, 0
    )  # fmt: skip
    *asked, probe = product_requests(emu)
    assert sorted(int(q["page"]) for q in asked) == list(range(1, 25))
    assert {(q["count"], q["sort"]) for q in asked} == {("10", "id")}
    assert (probe["count"], probe["sort"]) == ("1", "-created_at")
    assert emu.americommerce.stats.cache_hits == 0


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


async def test_capped_count_is_a_clear_error(tmp_path: Path, start_emu: StartEmu) -> None:
    """A store that serves fewer products per page than asked fails the run, saying what to set."""
    emu = await start_emu(products=120, max_count=50)
    db = tmp_path / "s.db"
    result = await sync(db, emu, page_size=100)
    assert result.status == "failed"
    assert "count=100" in (result.error or "") and "at most 50" in (result.error or "")
    assert query(db, "SELECT count(*) FROM products") == [(0,)]


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


async def test_refused_token_fails_clearly_and_never_leaks(
    tmp_path: Path, start_emu: StartEmu
) -> None:
    """A revoked admin-console token: the run fails on the second 401, and neither the error nor
    any log line carries the token."""
    emu = await start_emu(products=10)
    emu.americommerce.revoke_tokens(static_tokens=True)
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    result = await sync(tmp_path / "s.db", emu)
    assert result.status == "failed" and "401" in (result.error or "")
    assert TOKEN not in (result.error or "") and TOKEN not in stream.getvalue()
    finished = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert any(e["event"] == "sync.finished" and e["status"] == "failed" for e in finished)


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


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"total_count": 40, "products": [null]}', "product 0 is NoneType, not a JSON object"),
        ('{"total_count": 40, "products": [{}, "x"]}', "product 1 is str, not a JSON object"),
        ('{"total_count": 40, "products": {}}', "has no 'products' list"),
        ('{"total_count": "lots", "products": []}', "has no integer total_count (got 'lots')"),
        ('{"total_count": -1, "products": []}', "has no integer total_count (got -1)"),
        ('{"total_count": 40, "products": [{"id": 3}]}', "without an item_number"),
    ],
)
async def test_a_malformed_answer_fails_the_run_clearly_and_loses_nothing(
    tmp_path: Path, start_emu: StartEmu, body: str, expected: str
) -> None:
    """A 200 whose JSON has the wrong shape: the run is failed with one line naming the URL and
    the page, the products stored before are untouched, and nothing is tombstoned."""
    emu = await start_emu(products=40)
    db = tmp_path / "s.db"
    assert (await sync(db, emu)).ok
    before = stored_products(db, "shop")
    emu.americommerce.faults.add(Fault("json", body=body, after=1))
    result = await sync(db, emu, "full", max_concurrency=1)
    assert result.status == "failed"
    error = result.error or ""
    assert expected in error and "\n" not in error, error
    assert f"page 2 of {emu.url}/api/v1/products" in error or "item_number" in error
    assert query(db, "SELECT status, error FROM sync_runs WHERE id = ?", result.run_id) == [
        ("failed", error)
    ]
    assert stored_products(db, "shop") == before == emu.americommerce.catalog.snapshot()
    assert query(db, "SELECT count(*) FROM products WHERE deleted_at IS NOT NULL") == [(0,)]
