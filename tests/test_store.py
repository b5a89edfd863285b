"""SqliteStore against real files: upsert semantics, runs, tokens, migrations, misuse."""

from __future__ import annotations

import os
import sqlite3
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from syncd.errors import StoreError
from syncd.sources.base import make_record
from syncd.store import ProductRecord, RunTotals, SqliteStore, TokenEvent, TokenRecord
from syncd.store.base import PageCommit, RunProgress
from syncd.store.schema import SCHEMA_VERSION

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def product(sku: str, price: float = 10.0, name: str = "Widget") -> ProductRecord:
    item = {"sku": sku, "id": int(sku[1:]), "name": name, "price": price, "status": 1}
    return make_record(
        item, sku=sku, id=int(sku[1:]), name=name, price=price, status=1, type_id="simple",
        updated_at="2026-01-01 00:00:00",
    )  # fmt: skip


async def test_upsert_counts_created_updated_unchanged(store: SqliteStore) -> None:
    """New skus are created, changed content updated, identical content left alone."""
    first = await store.upsert_products("s", [product("p1"), product("p2")], T0)
    assert (first.created, first.updated, first.unchanged) == (2, 0, 0)
    second = await store.upsert_products(
        "s", [product("p1"), product("p2", price=12.5), product("p3")], T0 + timedelta(hours=1)
    )
    assert (second.created, second.updated, second.unchanged) == (1, 1, 1)
    assert await store.count_products("s") == 3


async def test_unchanged_product_is_not_rewritten(store: SqliteStore, tmp_path: Path) -> None:
    """Same content hash: the row (including last_synced_at) stays exactly as it was."""
    await store.upsert_products("s", [product("p1")], T0)
    await store.upsert_products("s", [product("p1")], T0 + timedelta(days=1))
    await store.upsert_products("s", [product("p1", price=1.0)], T0 + timedelta(days=2))
    rows = (
        sqlite3.connect(tmp_path / "syncd.db")
        .execute(
            "SELECT first_seen_at, last_synced_at, price, payload FROM products WHERE sku='p1'"
        )
        .fetchall()
    )
    assert rows == [
        ("2026-01-01T00:00:00.000Z", "2026-01-03T00:00:00.000Z", 1.0, product("p1", 1.0).payload)
    ]


async def test_sources_are_separate_namespaces(store: SqliteStore) -> None:
    """The same sku in two sources is two products."""
    await store.upsert_products("a", [product("p1")], T0)
    counts = await store.upsert_products("b", [product("p1")], T0)
    assert counts.created == 1
    assert await store.count_products("a") == await store.count_products("b") == 1


async def test_run_lifecycle_and_listing(store: SqliteStore) -> None:
    """A run opens as running and closes with its totals; last_runs shows the newest per source."""
    first = await store.start_run("s", "full", T0)
    await store.finish_run(first, "failed", RunTotals(pages=1), T0, "boom")
    second = await store.start_run("s", "full", T0 + timedelta(minutes=1))
    await store.finish_run(second, "succeeded", RunTotals(pages=3, items_seen=250, requests=4), T0)
    (last,) = await store.last_runs()
    assert (last.id, last.status, last.totals.items_seen, last.totals.requests) == (
        second, "succeeded", 250, 4,
    )  # fmt: skip
    failed = await store.runs("s", status="failed")
    assert [r.error for r in failed] == ["boom"]


async def test_abandoned_runs_are_marked_failed(store: SqliteStore) -> None:
    """Runs left `running` by a dead process become `failed` with the reason given."""
    run_id = await store.start_run("s", "full", T0)
    assert await store.fail_abandoned_runs(T0, "process died") == 1
    (run,) = await store.runs("s")
    assert (run.id, run.status, run.error) == (run_id, "failed", "process died")


async def test_abandoned_runs_of_one_source_leave_the_others_running(store: SqliteStore) -> None:
    """With `source`, only that source's running rows are closed; running_sources lists the rest."""
    await store.start_run("a", "full", T0, "host:1")
    await store.start_run("b", "full", T0, "host:1")
    await store.start_run("b", "incremental", T0, "host:2")
    assert await store.running_sources() == ["a", "b"]
    assert await store.fail_abandoned_runs(T0, "gone", source="b") == 2
    assert await store.running_sources() == ["a"]
    assert [(r.source, r.status) for r in await store.runs()] == [
        ("b", "failed"), ("b", "failed"), ("a", "running"),
    ]  # fmt: skip


async def test_tokens_round_trip_and_replace(store: SqliteStore) -> None:
    """A saved token loads back with its expiry; saving again replaces it."""
    await store.save_token("k", TokenRecord("tok-1", T0 + timedelta(hours=1), None, T0), T0)
    await store.save_token("k", TokenRecord("tok-2", T0 + timedelta(hours=2), "r2", T0), T0)
    loaded = await store.load_token("k")
    assert loaded == TokenRecord("tok-2", T0 + timedelta(hours=2), "r2", T0)
    await store.delete_token("k")
    assert await store.load_token("k") is None


async def test_token_events_are_listed_newest_first(store: SqliteStore) -> None:
    """token_events keeps fingerprints and details in order."""
    for i, event in enumerate(["issued", "invalidated", "refreshed"]):
        await store.add_token_event(
            TokenEvent("s", T0 + timedelta(seconds=i), event, None, f"fp{i}")
        )
    events = await store.token_events("s")
    assert [e.event for e in events] == ["refreshed", "invalidated", "issued"]


async def test_needs_reauth_flag(store: SqliteStore) -> None:
    """The reauth flag is set with a reason and cleared with None."""
    assert not (await store.source_state("s")).needs_reauth
    await store.set_needs_reauth("s", "refresh rejected", T0)
    state = await store.source_state("s")
    assert state.needs_reauth and state.reauth_reason == "refresh rejected"
    await store.set_needs_reauth("s", None, T0)
    assert not (await store.source_state("s")).needs_reauth


async def test_schema_is_versioned_and_wal(tmp_path: Path) -> None:
    """A new database is migrated to the current version and uses WAL."""
    async with SqliteStore(tmp_path / "x.db"):
        pass
    db = sqlite3.connect(tmp_path / "x.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


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
