"""The PostgreSQL page statement's encoding: a page travels as one JSON array (store/postgres.py),
so every column must come back exactly as it went in, whatever characters or values it holds."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from syncd.errors import StoreError
from syncd.sources.base import make_record
from syncd.store import PageCommit, ProductRecord
from syncd.store.postgres import PostgresStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)

# Text that JSON, array literals or SQL would each need to escape, and text beyond ASCII.
AWKWARD = ['quote " and \\ backslash', "{brace},comma", "NULL", "tab\tnew\nline", "ünïcødé ✓ 𝄞"]


def record(sku: str, **fields: Any) -> ProductRecord:
    """A record of `sku` whose payload holds `fields` too, with every column defaulted."""
    columns: dict[str, Any] = {
        "id": 1, "name": "n", "price": 1.5, "status": 1, "type_id": "simple",
        "updated_at": "2026-01-01 10:00:00",
    } | fields  # fmt: skip
    item = {"sku": sku, **{k: v for k, v in columns.items() if isinstance(v, str | int)}}
    return make_record(item, sku=sku, **columns)


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[PostgresStore]:
    """The open PostgreSQL store of the test database."""
    async with PostgresStore(postgres_url) as store:
        yield store


def rows(url: str) -> dict[str, tuple[Any, ...]]:
    """sku -> the stored columns the page wrote."""
    with psycopg.connect(url) as conn:
        found = conn.execute(
            "SELECT sku, id, name, price, status, type_id, updated_at, payload::text, "
            "content_hash FROM products"
        ).fetchall()
    return {row[0]: row[1:] for row in found}


async def test_awkward_text_and_missing_values_round_trip(
    pg: PostgresStore, postgres_url: str
) -> None:
    """Every column of every record is stored exactly, quotes, escapes, NULLs and all."""
    records = [record(text, name=text, type_id=text) for text in AWKWARD]
    records.append(
        record("none", id=None, name=None, price=None, status=None, type_id=None, updated_at=None)
    )
    records.append(record("big", id=2**63 - 1, status=-(2**63), price=1e300))
    counts = await pg.commit_page("s", records, T0, PageCommit())
    assert counts.created == len(records)
    stored = rows(postgres_url)
    for r in records:
        expected_time = None if r.updated_at is None else "2026-01-01T10:00:00.000Z"
        assert stored[r.sku][:6] == (r.id, r.name, r.price, r.status, r.type_id, expected_time)
        assert stored[r.sku][7] == r.content_hash
    with psycopg.connect(postgres_url) as conn:
        for r in records:
            same = conn.execute(
                "SELECT payload = %s::jsonb FROM products WHERE sku = %s", (r.payload, r.sku)
            ).fetchone()
            assert same == (True,), r.sku


async def test_prices_json_cannot_carry_are_stored_as_float8(
    pg: PostgresStore, postgres_url: str
) -> None:
    """NaN and the infinities are stored as themselves, not as NULL."""
    prices = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
    await pg.commit_page("s", [record(s, price=p) for s, p in prices.items()], T0, PageCommit())
    stored = {sku: columns[2] for sku, columns in rows(postgres_url).items()}
    assert math.isnan(stored["nan"])
    assert (stored["inf"], stored["-inf"]) == (math.inf, -math.inf)


async def test_an_id_past_64_bits_is_a_store_error(pg: PostgresStore, postgres_url: str) -> None:
    """A value the page cannot carry fails the page with a StoreError, writing nothing."""
    with pytest.raises(StoreError, match="cannot encode a page"):
        await pg.commit_page("s", [record("ok"), record("huge", id=2**64)], T0, PageCommit())
    assert rows(postgres_url) == {}


async def test_scan_view_finds_awkward_skus(pg: PostgresStore) -> None:
    """The skus of a scan's view travel in binary: awkward ones are found, an empty list works."""
    await pg.commit_page("s", [record(text) for text in AWKWARD], T0, PageCommit(scan_id=7))
    view = await pg.scan_view("s", 7, [*AWKWARD, "absent"])
    assert sorted(view) == sorted(AWKWARD)
    assert all(v.seen and v.live for v in view.values())
    assert await pg.scan_view("s", 7, []) == {}
    assert await pg.unseen("s", 7, [*AWKWARD, "absent"]) == ["absent"]


async def test_a_payload_with_a_lone_surrogate_is_a_store_error(
    pg: PostgresStore, postgres_url: str
) -> None:
    """A payload UTF-8 cannot carry (a lone surrogate, kept by the lenient parser) fails the page
    with a StoreError, writing nothing."""
    bad = record("bad")._replace(payload='{"sku":"bad","name":"\ud800"}')
    with pytest.raises(StoreError, match="cannot encode a page"):
        await pg.commit_page("s", [record("ok"), bad], T0, PageCommit())
    assert rows(postgres_url) == {}


@pytest.fixture
def tries(pg: PostgresStore, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each page statement `pg` builds inserts plainly (without ON CONFLICT), in order."""
    built: list[bool] = []
    build = pg._page_statement

    def spy(*args: Any) -> Any:
        built.append(args[-1])
        return build(*args)

    monkeypatch.setattr(pg, "_page_statement", spy)
    return built


async def test_a_page_hinted_new_over_dead_rows_revives_them_and_stops_guessing(
    pg: PostgresStore, postgres_url: str, tries: list[bool]
) -> None:
    """A page hinted new is inserted without ON CONFLICT; a tombstoned row under one of its skus
    fails that insert with nothing written, and the page is written again as a revival (live,
    one `revived` feed entry). The source's later pages skip the plain try."""
    await pg.commit_page("s", [record("a"), record("b")], T0, PageCommit())
    assert await pg.finish_full_scan("s", 1, T0, tombstone=True, watermark=None) == 2
    tries.clear()  # the setup's own page
    counts = await pg.commit_page("s", [record("a"), record("c")], T0, PageCommit(new=True))
    assert (counts.created, counts.updated, counts.unchanged) == (1, 1, 0)
    assert tries == [True, False]
    await pg.commit_page("s", [record("b")], T0, PageCommit(new=True))
    assert tries == [True, False, False]
    await pg.commit_page("t", [record("a")], T0, PageCommit(new=True))
    assert tries[-1] is True  # another source still tries the plain insert
    with psycopg.connect(postgres_url) as conn:
        live = conn.execute(
            "SELECT source, sku FROM products WHERE deleted_at IS NULL ORDER BY 1, 2"
        ).fetchall()
        ops = conn.execute(
            "SELECT sku, op FROM product_changes WHERE source = 's' ORDER BY seq"
        ).fetchall()
    assert live == [("s", "a"), ("s", "b"), ("s", "c"), ("t", "a")]
    assert ops[-3:] == [("a", "revived"), ("c", "created"), ("b", "revived")]


async def test_a_page_hinted_new_that_races_a_page_in_flight_waits_and_rewrites(
    pg: PostgresStore, postgres_url: str, tries: list[bool]
) -> None:
    """Pages of a full scan commit in parallel: one hinted new whose sku another commit is still
    inserting waits for it, fails on the key once it lands, and is written again with ON
    CONFLICT (the later content wins, counted as an update); nothing is lost or doubled."""
    first, later = record("x", name="first"), record("x", name="later")
    async with await psycopg.AsyncConnection.connect(postgres_url) as other:
        # The page in flight: its row is inserted, its transaction not committed yet.
        await other.execute(
            "INSERT INTO products (source, sku, name, payload, content_hash, first_seen_at, "
            "last_synced_at) VALUES ('s', 'x', %s, %s::jsonb, %s, %s, %s)",
            (first.name, first.payload, first.content_hash, T0, T0),
        )
        page = asyncio.ensure_future(pg.commit_page("s", [later], T0, PageCommit(new=True)))
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as watch:
            for _ in range(500):  # until the plain insert waits on the in-flight key
                cursor = await watch.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                row = await cursor.fetchone()
                if row and row[0]:
                    break
                await asyncio.sleep(0.01)
            else:
                pytest.fail("the page never waited for the row in flight")
        assert not page.done()
        await other.commit()
    counts = await page
    assert (counts.created, counts.updated, counts.unchanged) == (0, 1, 0)
    assert tries == [True, False]
    assert rows(postgres_url)["x"][1] == "later"


async def test_a_page_hinted_new_whose_sku_the_scan_marked_already_is_written_again(
    pg: PostgresStore, postgres_url: str, tries: list[bool]
) -> None:
    """A plain page inserts its scan marks without ON CONFLICT too: a mark already there (one a
    verification recorded without a product) fails the plain try, and the retry writes the
    product and keeps the one mark."""
    await pg.mark_seen("s", 7, ["x"])
    counts = await pg.commit_page("s", [record("x"), record("y")], T0, PageCommit(7, new=True))
    assert (counts.created, counts.updated, counts.unchanged) == (2, 0, 0)
    assert tries == [True, False]
    assert sorted(rows(postgres_url)) == ["x", "y"]
    assert await pg.count_seen("s", 7) == 2
    assert await pg.unseen("s", 7, ["x", "y", "z"]) == ["z"]
