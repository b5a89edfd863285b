"""SQLite-only store behaviour (file modes, WAL, the one handoff per page, schema versions);
what every backend must do is in tests/test_store_conformance.py."""

from __future__ import annotations

import os
import sqlite3
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from syncd.errors import StoreError
from syncd.sources.base import make_record
from syncd.store import ProductRecord, SqliteStore, TokenRecord
from syncd.store.base import PageCommit, RunProgress
from syncd.store.schema import MIGRATIONS, SCHEMA_VERSION

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def product(sku: str, price: float = 10.0, name: str = "Widget") -> ProductRecord:
    item = {"sku": sku, "id": int(sku[1:]), "name": name, "price": price, "status": 1}
    return make_record(
        item, sku=sku, id=int(sku[1:]), name=name, price=price, status=1, type_id="simple",
        updated_at="2026-01-01 00:00:00",
    )  # fmt: skip


async def test_abandoned_runs_are_marked_failed(store: SqliteStore) -> None:
    """Runs left `running` by a dead process become `failed` with the reason given."""
    run_id = await store.start_run("s", "full", T0)
    assert await store.fail_abandoned_runs(T0, "process died") == 1
    (run,) = await store.runs("s")
    assert (run.id, run.status, run.error) == (run_id, "failed", "process died")


async def test_schema_is_versioned_and_wal(tmp_path: Path) -> None:
    """A new database is migrated to the current version and uses WAL."""
    async with SqliteStore(tmp_path / "x.db"):
        pass
    db = sqlite3.connect(tmp_path / "x.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_the_updated_at_index_is_dropped_and_the_rows_kept(tmp_path: Path) -> None:
    """A database from before the migration that drops `products_source_updated` (no read uses
    it; every page paid for it) loses it and keeps its products; an index an operator creates
    again afterwards stays."""
    (dropping,) = [n for n, m in enumerate(MIGRATIONS) if "DROP INDEX IF EXISTS products_" in m]
    path = tmp_path / "x.db"
    with sqlite3.connect(path) as db:
        for script in MIGRATIONS[:dropping]:
            db.executescript(script)
        db.execute(f"PRAGMA user_version = {dropping}")
        db.execute(
            "INSERT INTO products (source, sku, updated_at, payload, content_hash, first_seen_at, "
            "last_synced_at) VALUES ('s', 'p1', 'u', '{}', 'h', 'f', 'l')"
        )
    indexes = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'products'"
    assert ("products_source_updated",) in sqlite3.connect(path).execute(indexes).fetchall()
    async with SqliteStore(path) as store:
        assert await store.count_products("s") == 1
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert ("products_source_updated",) not in db.execute(indexes).fetchall()
    db.execute("CREATE INDEX products_source_updated ON products (source, updated_at)")
    db.commit()
    db.close()
    async with SqliteStore(path):
        pass
    db = sqlite3.connect(path)
    assert ("products_source_updated",) in db.execute(indexes).fetchall()


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A database from a newer syncd is not touched."""
    db = sqlite3.connect(tmp_path / "x.db")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer than this syncd"):
        async with SqliteStore(tmp_path / "x.db"):
            pass


async def test_misuse_says_how_to_fix(tmp_path: Path) -> None:
    """Using a closed store, or reopening one, raises a RuntimeError that explains."""
    store = SqliteStore(tmp_path / "x.db")
    with pytest.raises(RuntimeError, match="async with"):
        await store.count_products("s")
    async with store:
        pass
    with pytest.raises(RuntimeError, match="cannot be reopened"):
        async with store:
            pass


async def test_write_failure_is_a_store_error_and_keeps_data(tmp_path: Path) -> None:
    """A write that SQLite refuses raises StoreError and leaves earlier data intact."""
    path = tmp_path / "x.db"
    async with SqliteStore(path) as store:
        await store.upsert_products("s", [product("p1")], T0)
        blocker = sqlite3.connect(path, timeout=0)
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        slow = SqliteStore(path, busy_timeout=0.05)
        async with slow:
            with pytest.raises(StoreError, match="cannot store 1 products"):
                await slow.upsert_products("s", [product("p2")], T0)
        blocker.rollback()
        blocker.close()
        assert await store.count_products("s") == 1


async def test_a_new_database_and_its_wal_files_are_private(tmp_path: Path) -> None:
    """The file holds bearer tokens: created 0600 whatever the umask, and so are -wal and -shm."""
    path = tmp_path / "new.db"
    previous = os.umask(0o022)
    try:
        async with SqliteStore(path) as opened:
            await opened.save_token("k", TokenRecord("tok", None, None, T0), T0)
            files = ("new.db", "new.db-wal", "new.db-shm")
            modes = {name: stat.S_IMODE(os.stat(tmp_path / name).st_mode) for name in files}
    finally:
        os.umask(previous)
    assert modes == {"new.db": 0o600, "new.db-wal": 0o600, "new.db-shm": 0o600}


async def test_an_existing_database_keeps_its_mode(tmp_path: Path) -> None:
    """An operator who made the file group-readable on purpose is not overruled."""
    path = tmp_path / "old.db"
    async with SqliteStore(path):
        pass
    path.chmod(0o640)
    async with SqliteStore(path) as opened:
        assert await opened.count_products("s") == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


async def test_a_page_is_one_handoff_to_the_sqlite_thread(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page's whole transaction (products, feed, scan marks, progress, run counters) and the
    scan's view of a page each cross to aiosqlite's thread once: per page, a dozen crossings
    cost more CPU than the statements (docs/PERFORMANCE-CPU.md)."""
    run_id = await store.start_run("s", "full", T0)
    await store.upsert_products("s", [product("p2")], T0)
    calls: list[object] = []
    original: Any = aiosqlite.Connection._execute  # untyped in aiosqlite

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(fn)
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    view = await store.scan_view("s", run_id, ["p1", "p2"])
    assert len(calls) == 1 and set(view) == {"p2"}
    page = [product("p1"), product("p2", price=3.0), product("p3")]
    commit = PageCommit(run_id, "c1", forget=("p9",), run=RunProgress(run_id, requests=4))
    counts = await store.commit_page("s", page, T0, commit)
    assert len(calls) == 2
    assert (counts.created, counts.updated, counts.unchanged) == (2, 1, 0)
    monkeypatch.undo()
    assert await store.unseen("s", run_id, ["p1", "p2", "p3", "p4"]) == ["p4"]
    assert (await store.source_state("s")).checkpoint == "c1"
    (run,) = await store.runs("s")
    assert (run.totals.pages, run.totals.items_created, run.totals.requests) == (1, 2, 4)
    assert [c.op for c in await store.changes("s", 0, 10)] == [
        "created", "created", "updated", "created"
    ]  # fmt: skip


async def test_a_page_that_fails_midway_leaves_nothing(tmp_path: Path) -> None:
    """A statement late in the page (the scan marks) refused: the products, the feed entries and
    the checkpoint written before it in that handoff are rolled back with it."""
    path = tmp_path / "x.db"
    async with SqliteStore(path) as store:
        await store.upsert_products("s", [product("p0")], T0)
        with sqlite3.connect(path) as db:
            db.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON full_scan_seen "
                "BEGIN SELECT RAISE(ABORT, 'refused by a test'); END"
            )
        commit = PageCommit(scan_id=1, checkpoint="c1")
        with pytest.raises(StoreError, match=r"^cannot store 1 products of 's': refused"):
            await store.commit_page("s", [product("p1")], T0, commit)
        assert await store.count_products("s") == 1
        assert (await store.source_state("s")).checkpoint is None
        assert [c.sku for c in await store.changes("s", 0, 10)] == ["p0"]
        # The connection is usable again: the failed transaction was rolled back, not left open.
        await store.upsert_products("s", [product("p2")], T0)
        assert await store.count_products("s") == 2
