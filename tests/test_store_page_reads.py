"""A page's commit on SQLite reuses what the scan's view of it read, only while nothing was
written since; its products (several to a statement), scan marks and feed entries are stored
exactly as given."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from syncd.errors import StoreError
from syncd.sources.base import make_record
from syncd.store import ProductRecord, SqliteStore, rows
from syncd.store.base import PageCommit
from syncd.store.rows import stored_time
from tests.test_store import product

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LOOKUP = "SELECT sku, content_hash, deleted_at FROM products"


async def traced(store: SqliteStore) -> list[str]:
    """Every statement the store's connection runs from now on."""
    statements: list[str] = []
    await store._on_thread(lambda db: db.set_trace_callback(statements.append))
    return statements


async def test_a_screened_page_is_committed_without_reading_its_rows_again(
    store: SqliteStore,
) -> None:
    """`scan_view` read the page's rows; its commit, with nothing written between, does not
    look them up again (and still tells created, updated and unchanged apart)."""
    await store.upsert_products("s", [product("p1"), product("p2")], T0)
    statements = await traced(store)
    await store.scan_view("s", 7, ["p1", "p2", "p3"])
    page = [product("p1"), product("p2", price=3.0), product("p3")]
    counts = await store.commit_page("s", page, T0, PageCommit(7))
    assert (counts.created, counts.updated, counts.unchanged) == (1, 1, 1)
    assert not [s for s in statements if s.startswith(LOOKUP)]
    assert len([s for s in statements if "json_each" in s]) == 2  # the marks, the feed entries
    # Without a view of the page first, the commit reads the rows itself.
    await store.commit_page("s", [product("p4")], T0, PageCommit(7))
    assert [s for s in statements if s.startswith(LOOKUP)]


async def test_a_write_by_another_connection_after_the_view_is_seen(
    store: SqliteStore, tmp_path: Path
) -> None:
    """Another process stored the sku after the view found nothing: the commit reads the row
    again and rewrites it, where the view's word would have inserted it a second time."""
    assert await store.scan_view("s", 7, ["p1"]) == {}
    async with SqliteStore(tmp_path / "syncd.db") as other:
        await other.upsert_products("s", [product("p1")], T0)
    counts = await store.commit_page("s", [product("p1", price=3.0)], T0, PageCommit(7))
    assert (counts.created, counts.updated) == (0, 1)


async def test_a_write_by_the_store_itself_after_the_view_is_seen(store: SqliteStore) -> None:
    """The same connection changed the row between the view and the commit (here another
    scan's end tombstoned it): the commit reads it again and revives it."""
    await store.upsert_products("s", [product("p1")], T0)
    assert (await store.scan_view("s", 7, ["p1"]))["p1"].live
    assert await store.finish_full_scan("s", 9, T0, tombstone=True, watermark=None) == 1
    counts = await store.commit_page("s", [product("p1")], T0, PageCommit(7))
    assert (counts.updated, counts.unchanged) == (1, 0)
    assert [c.op for c in await store.changes("s", 0, 10)][-1] == "revived"


def with_nul(sku: str) -> ProductRecord:
    item = {"sku": sku, "id": 1}
    return make_record(item, sku, 1, None, None, None, None, None)


async def test_a_sku_with_a_nul_character_is_marked_and_logged_whole(
    store: SqliteStore, tmp_path: Path
) -> None:
    """SQLite's JSON functions end a text at NUL: such a page's marks and feed entries are
    written row by row instead, so the sku stays whole everywhere."""
    sku = "a\x00b"
    await store.commit_page("s", [with_nul(sku)], T0, PageCommit(7))
    await store.mark_seen("s", 8, [sku])
    assert await store.unseen("s", 7, [sku, "a"]) == ["a"]
    assert await store.unseen("s", 8, [sku, "a"]) == ["a"]
    assert [c.sku for c in await store.changes("s", 0, 10)] == [sku]
    with sqlite3.connect(tmp_path / "syncd.db") as db:
        assert db.execute("SELECT sku FROM full_scan_seen ORDER BY scan_id").fetchall() == [
            (sku,),
            (sku,),
        ]


def varied(n: int) -> ProductRecord:
    item = {"sku": f"k{n:03d}", "id": n, "note": "é\u2028" * (n % 3)}
    name = None if n % 7 == 0 else f"name {n}"
    price = None if n % 5 == 0 else n / 4
    return make_record(
        item, f"k{n:03d}", n, name, price, n % 2, "simple", f"2025-12-05 00:{n % 60:02d}:00"
    )


async def test_new_products_are_stored_whole_and_in_page_order(
    store: SqliteStore, tmp_path: Path
) -> None:
    """123 new products (two statements of 50, then one by one): every column of every row
    as given, the rows in the page's order."""
    page = [varied(n) for n in range(123, 0, -1)]
    counts = await store.commit_page("s", page, T0, PageCommit(7))
    assert counts.created == 123
    with sqlite3.connect(tmp_path / "syncd.db") as db:
        rows = db.execute(
            "SELECT source, sku, id, name, price, status, type_id, updated_at, payload, "
            "content_hash, first_seen_at, last_synced_at FROM products ORDER BY rowid"
        ).fetchall()
    stamp = "2026-01-01T00:00:00.000Z"
    assert rows == [
        ("s", r.sku, r.id, r.name, r.price, r.status, r.type_id, stored_time(r.updated_at),
         r.payload, r.content_hash, stamp, stamp)
        for r in page
    ]  # fmt: skip


async def test_without_sqlites_json_functions_a_page_is_written_row_by_row(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An SQLite built without `json_each`: the marks and feed entries are bound row by row,
    the same rows as with it."""
    monkeypatch.setattr(rows, "_has_json_each", lambda: False)
    statements = await traced(store)
    page = [product("p1"), product("p2")]
    await store.commit_page("s", page, T0, PageCommit(7))
    assert not [s for s in statements if "json_each" in s]
    assert await store.unseen("s", 7, ["p1", "p2", "p3"]) == ["p3"]
    entries = [(c.sku, c.op, c.content_hash) for c in await store.changes("s", 0, 10)]
    assert entries == [(r.sku, "created", r.content_hash) for r in page]


async def test_a_product_refused_by_the_table_leaves_nothing_of_its_page(
    store: SqliteStore, tmp_path: Path
) -> None:
    """A row the products table refuses (no payload) inside a statement of 50: the statement
    rolls the whole page back (products, feed entries, marks) and the store goes on."""
    page = [varied(n) for n in range(1, 61)]
    page[9] = page[9]._replace(payload=None)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="NOT NULL"):
        await store.commit_page("s", page, T0, PageCommit(7, "c1"))
    counts = await store.commit_page("s", [varied(1)], T0, PageCommit(7))
    assert counts.created == 1
    with sqlite3.connect(tmp_path / "syncd.db") as db:
        assert db.execute("SELECT count(*) FROM products").fetchone() == (1,)
        assert db.execute("SELECT count(*) FROM full_scan_seen").fetchone() == (1,)
    assert [c.sku for c in await store.changes("s", 0, 100)] == [varied(1).sku]
    assert (await store.source_state("s")).checkpoint is None
