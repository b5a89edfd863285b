"""The `Store` protocol and the run locks, the same tests against both backends (SQLite, PostgreSQL).

Each test takes `backend`, parametrized over SQLite in tmp_path and PostgreSQL in the session's
throwaway database (skipped without a server, a failure with SYNCD_REQUIRE_POSTGRES=1).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from syncd.config.settings import StoreSettings
from syncd.errors import SourceBusyError, StoreError
from syncd.sources.base import make_record
from syncd.store import (
    CLEAR,
    CallWindowState,
    PageCommit,
    ProductRecord,
    RateSearch,
    RunProgress,
    RunTotals,
    SourceRate,
    TokenEvent,
    TokenRecord,
    history,
    postgres_history,
)
from syncd.store.factory import AnyStore, open_store, run_locks
from syncd.store.history import RUNS_KEPT
from syncd.store.postgres import PostgresStore
from syncd.store.postgres_locks import PostgresRunLocks
from syncd.store.postgres_schema import COORDINATION_TABLES, MIGRATIONS, SCHEMA_VERSION, TABLES
from syncd.store.rows import iso
from syncd.sync import RESUME_ATTEMPTS
from tests.postgres_support import throwaway_database

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Backend:
    """One backend under test: its settings and a way to read raw rows behind the protocol."""

    name: str
    settings: StoreSettings

    def rows(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        """Raw rows (`?` placeholders), times as ISO text and payloads as parsed JSON."""
        if self.settings.url is None:
            with sqlite3.connect(self.settings.path) as conn:
                raw = conn.execute(query, params).fetchall()
        else:
            with psycopg.connect(self.settings.url) as pg:
                raw = pg.execute(query.replace("?", "%s"), params).fetchall()
        return [tuple(_plain(v) for v in row) for row in raw]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, str) and value[:1] in "{[":
        return json.loads(value)
    return value


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each backend's settings, with an empty database."""
    if request.param == "sqlite":
        return Backend("sqlite", StoreSettings(path=tmp_path / "syncd.db"))
    url = request.getfixturevalue("postgres_url")
    return Backend("postgres", StoreSettings(url=url))


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[AnyStore]:
    """The open store of `backend`."""
    async with open_store(backend.settings) as opened:
        yield opened


def product(sku: str, price: float = 10.0, name: str = "Widget") -> ProductRecord:
    item = {"sku": sku, "id": int(sku[1:]), "name": name, "price": price, "status": 1}
    return make_record(
        item, sku=sku, id=int(sku[1:]), name=name, price=price, status=1, type_id="simple",
        updated_at="2026-01-01 00:00:00",
    )  # fmt: skip


# -- products -------------------------------------------------------------------------------------


async def test_upsert_counts_created_updated_unchanged(store: AnyStore) -> None:
    """New skus are created, changed content updated, identical content left alone."""
    first = await store.upsert_products("s", [product("p1"), product("p2")], T0)
    assert (first.created, first.updated, first.unchanged) == (2, 0, 0)
    second = await store.upsert_products(
        "s", [product("p1"), product("p2", price=12.5), product("p3")], T0 + timedelta(hours=1)
    )
    assert (second.created, second.updated, second.unchanged) == (1, 1, 1)
    assert await store.count_products("s") == 3


async def test_unchanged_product_is_not_rewritten(store: AnyStore, backend: Backend) -> None:
    """Same content hash: the row (including last_synced_at) stays exactly as it was."""
    await store.upsert_products("s", [product("p1")], T0)
    await store.upsert_products("s", [product("p1")], T0 + timedelta(days=1))
    await store.upsert_products("s", [product("p1", price=1.0)], T0 + timedelta(days=2))
    assert backend.rows(
        "SELECT first_seen_at, last_synced_at, price, payload, deleted_at FROM products "
        "WHERE sku = 'p1'"
    ) == [
        (iso(T0), iso(T0 + timedelta(days=2)), 1.0,
         json.loads(product("p1", 1.0).payload), None)
    ]  # fmt: skip


async def test_postgres_leaves_an_unchanged_row_version_alone(postgres_url: str) -> None:
    """On PostgreSQL an unchanged product is not even a new row version (its xmin stays)."""
    backend = Backend("postgres", StoreSettings(url=postgres_url))
    async with open_store(backend.settings) as store:
        await store.upsert_products("s", [product("p1"), product("p2")], T0)
        before = backend.rows("SELECT sku, xmin::text FROM products ORDER BY sku")
        await store.upsert_products("s", [product("p1"), product("p2", price=2.0)], T0)
        after = backend.rows("SELECT sku, xmin::text FROM products ORDER BY sku")
    assert after[0] == before[0] and after[1] != before[1]


async def test_postgres_does_not_even_lock_an_unchanged_row(postgres_url: str) -> None:
    """An unchanged product of a page is left out before the insert: no row lock (xmax stays 0,
    no WAL record), where ON CONFLICT's WHERE alone locks each row it then leaves as it is."""
    backend = Backend("postgres", StoreSettings(url=postgres_url))
    async with open_store(backend.settings) as store:
        await store.upsert_products("s", [product("p1")], T0)
        counts = await store.upsert_products("s", [product("p1"), product("p2")], T0)
        assert (counts.created, counts.unchanged) == (1, 1)
        assert backend.rows("SELECT sku, xmax::text FROM products ORDER BY sku") == [
            ("p1", "0"),
            ("p2", "0"),
        ]


async def test_a_wrong_new_hint_changes_nothing_written(store: AnyStore) -> None:
    """`PageCommit.new` only picks how a store writes: a page hinted new whose skus are stored
    (unchanged, changed, tombstoned) still counts and writes each as it is."""
    await store.upsert_products("s", [product("p1"), product("p2"), product("p3")], T0)
    assert await store.finish_full_scan("s", 1, T0, tombstone=True, watermark=None) == 3
    await store.upsert_products("s", [product("p1"), product("p2")], T0)
    page = [product("p1"), product("p2", price=3.0), product("p3"), product("p4")]
    counts = await store.commit_page("s", page, T0, PageCommit(new=True))
    assert (counts.created, counts.updated, counts.unchanged) == (1, 2, 1)
    assert await store.count_products("s") == 4


async def test_sources_are_separate_namespaces(store: AnyStore) -> None:
    """The same sku in two sources is two products."""
    await store.upsert_products("a", [product("p1")], T0)
    counts = await store.upsert_products("b", [product("p1")], T0)
    assert counts.created == 1
    assert await store.count_products("a") == await store.count_products("b") == 1


async def test_a_page_repeating_a_sku_keeps_the_last(store: AnyStore, backend: Backend) -> None:
    """A sku twice in one page is one product, with the later content."""
    counts = await store.upsert_products("s", [product("p1"), product("p1", price=3.0)], T0)
    assert (counts.created, counts.updated, counts.unchanged) == (1, 0, 0)
    assert backend.rows("SELECT price FROM products") == [(3.0,)]


async def test_full_scan_tombstones_the_unseen_and_revives_returners(
    store: AnyStore, backend: Backend
) -> None:
    """Products a finished full scan did not see are tombstoned; one that comes back is live again."""
    await store.commit_page("s", [product("p1"), product("p2"), product("p3")], T0, PageCommit())
    await store.commit_page("s", [product("p1")], T0, PageCommit(scan_id=7, checkpoint='{"p":2}'))
    await store.mark_seen("s", 7, ["p2"])
    assert await store.unseen("s", 7, ["p1", "p2", "p3", "p9"]) == ["p3", "p9"]
    assert (await store.source_state("s")).checkpoint == '{"p":2}'
    later = T0 + timedelta(hours=1)
    assert await store.finish_full_scan("s", 7, later, tombstone=True, watermark='{"w":1}') == 1
    state = await store.source_state("s")
    assert (state.checkpoint, state.watermark) == (None, '{"w":1}')
    assert await store.unseen("s", 7, ["p1"]) == ["p1"]  # the marks are forgotten
    assert await store.count_products("s") == 2
    assert backend.rows("SELECT sku, deleted_at FROM products WHERE deleted_at IS NOT NULL") == [
        ("p3", iso(later))
    ]
    # Back with the same content: rewritten (revived), so counted as updated.
    counts = await store.upsert_products("s", [product("p3")], later)
    assert (counts.created, counts.updated, counts.unchanged) == (0, 1, 0)
    assert backend.rows("SELECT deleted_at FROM products WHERE sku = 'p3'") == [(None,)]


async def test_unchanged_skus_are_marked_and_counted_without_being_sent(
    store: AnyStore, backend: Backend
) -> None:
    """`PageCommit.seen`: skus the screen found unchanged are marked seen by the scan and counted
    as unchanged (in the counts and the running run's row) with nothing written for them; with
    no scan, nothing else to write and no run, the store is not even asked."""
    await store.commit_page("s", [product("p1"), product("p2")], T0, PageCommit())
    run = await store.start_run("s", "full", T0)
    later = T0 + timedelta(hours=1)
    commit = PageCommit(7, '{"p":1}', run=RunProgress(run, 3), seen=("p1", "p2"))
    counts = await store.commit_page("s", [product("p3")], later, commit)
    assert (counts.created, counts.updated, counts.unchanged) == (1, 0, 2)
    assert await store.unseen("s", 7, ["p1", "p2", "p3", "p4"]) == ["p4"]
    assert backend.rows("SELECT sku, last_synced_at FROM products ORDER BY sku") == [
        ("p1", iso(T0)), ("p2", iso(T0)), ("p3", iso(later))
    ]  # fmt: skip
    [row] = await store.runs("s", limit=1)
    totals = row.totals
    assert (totals.items_seen, totals.items_created, totals.items_unchanged) == (3, 1, 2)
    counts = await store.commit_page("s", [], later, PageCommit(seen=("p1",)))
    assert (counts.created, counts.updated, counts.unchanged) == (0, 0, 1)


async def test_the_running_row_counts_every_product_the_page_brought(store: AnyStore) -> None:
    """Products a page brought but did not write (a disputed sku) count as seen while the run
    goes on, as they do in its final row."""
    run = await store.start_run("s", "full", T0)
    commit = PageCommit(7, '{"p":1}', run=RunProgress(run, 2, arrived=4), seen=("p9",))
    await store.commit_page("s", [product("p1"), product("p2")], T0, commit)
    [row] = await store.runs("s", limit=1)
    assert (row.totals.items_seen, row.totals.items_created, row.totals.items_unchanged) == (
        4,
        2,
        1,
    )


async def test_marking_the_live_products_seen_skips_the_dead_and_other_sources(
    store: AnyStore,
) -> None:
    """A first scan's implicit marks made rows: one for each live product of the source, none
    for a tombstoned one or another source's, none twice; a later tombstone finds nothing."""
    await store.commit_page("s", [product("p1"), product("p2"), product("p3")], T0, PageCommit())
    await store.commit_page("t", [product("p4")], T0, PageCommit())
    await store.commit_page("s", [product("p1"), product("p2")], T0, PageCommit(scan_id=1))
    assert await store.finish_full_scan("s", 1, T0, tombstone=True, watermark=None) == 1  # p3
    await store.mark_seen("s", 7, ["p1"])
    assert await store.mark_live_seen("s", 7) == 1  # p2: p1 was marked already, p3 is dead
    assert await store.count_seen("s", 7) == 2
    assert await store.unseen("s", 7, ["p1", "p2", "p3", "p4"]) == ["p3", "p4"]
    assert await store.finish_full_scan("s", 7, T0, tombstone=True, watermark=None) == 0
    assert await store.count_products("s") == 2


async def test_has_products_counts_only_live_rows_of_the_source(store: AnyStore) -> None:
    """A source with only tombstoned rows, or only another source's rows, has no products."""
    assert not await store.has_products("s")
    await store.commit_page("s", [product("p1")], T0, PageCommit(scan_id=1))
    await store.commit_page("t", [product("p1")], T0, PageCommit())
    assert await store.has_products("s") and not await store.has_products("u")
    assert await store.finish_full_scan("s", 2, T0, tombstone=True, watermark=None) == 1
    assert not await store.has_products("s") and await store.has_products("t")


async def test_a_scan_without_tombstoning_deletes_nothing(store: AnyStore) -> None:
    """tombstone=False (an unreliable scan) keeps every product and still clears the marks."""
    await store.commit_page("s", [product("p1"), product("p2")], T0, PageCommit(scan_id=1))
    assert await store.finish_full_scan("s", 2, T0, tombstone=False, watermark=None) == 0
    assert await store.count_products("s") == 2
    assert await store.unseen("s", 1, ["p1"]) == ["p1"]


async def test_progress_fields_are_set_and_cleared_independently(store: AnyStore) -> None:
    """A page's checkpoint leaves the watermark alone and vice versa; CLEAR erases one."""
    await store.commit_page("s", [], T0, PageCommit(watermark="w1"))
    await store.commit_page("s", [product("p1")], T0, PageCommit(checkpoint="c1"))
    state = await store.source_state("s")
    assert (state.checkpoint, state.watermark) == ("c1", "w1")
    await store.commit_page("s", [], T0, PageCommit(watermark=CLEAR))
    state = await store.source_state("s")
    assert (state.checkpoint, state.watermark) == ("c1", None)
    await store.set_needs_reauth("s", "rejected", T0)
    assert (await store.source_state("s")).checkpoint == "c1"  # the flag keeps the progress
    assert await store.finish_full_scan("s", 1, T0, tombstone=False, watermark=CLEAR) == 0
    state = await store.source_state("s")
    assert (state.checkpoint, state.watermark, state.needs_reauth) == (None, None, True)


# -- runs -----------------------------------------------------------------------------------------


async def test_run_lifecycle_and_listing(store: AnyStore) -> None:
    """A run opens as running and closes with its totals; last_runs shows the newest per source."""
    first = await store.start_run("s", "full", T0)
    await store.finish_run(first, "failed", RunTotals(pages=1), T0, "boom")
    second = await store.start_run("s", "full", T0 + timedelta(minutes=1), "host:1")
    totals = RunTotals(3, 250, 1, 2, 247, 4, 4, 1, 1)
    await store.finish_run(second, "succeeded", totals, T0 + timedelta(minutes=2))
    other = await store.start_run("t", "incremental", T0 + timedelta(minutes=3))
    last = await store.last_runs()
    assert [(r.source, r.id, r.status) for r in last] == [
        ("s", second, "succeeded"), ("t", other, "running"),
    ]  # fmt: skip
    assert last[0].totals == totals
    assert (last[0].started_at, last[0].finished_at) == (
        iso(T0 + timedelta(minutes=1)),
        iso(T0 + timedelta(minutes=2)),
    )
    assert [r.error for r in await store.runs("s", status="failed")] == ["boom"]
    assert [r.id for r in await store.runs(since=T0 + timedelta(minutes=1))] == [other, second]
    assert [r.id for r in await store.runs(limit=1)] == [other]


async def test_abandoned_runs_of_one_source_leave_the_others_running(store: AnyStore) -> None:
    """With `source`, only that source's running rows are closed; running_sources lists the rest."""
    await store.start_run("a", "full", T0, "host:1")
    await store.start_run("b", "full", T0, "host:1")
    await store.start_run("b", "incremental", T0, "host:2")
    assert await store.running_sources() == ["a", "b"]
    assert await store.fail_abandoned_runs(T0, "gone", source="b") == 2
    assert await store.running_sources() == ["a"]
    assert [(r.source, r.status, r.error) for r in await store.runs()] == [
        ("b", "failed", "gone"), ("b", "failed", "gone"), ("a", "running", None),
    ]  # fmt: skip
    assert await store.fail_abandoned_runs(T0, "all") == 1
    assert await store.running_sources() == []


# -- tokens and state ------------------------------------------------------------------------------


async def test_tokens_round_trip_replace_and_delete(store: AnyStore) -> None:
    """A saved token loads back with its expiry; saving again replaces it; delete forgets it."""
    assert await store.load_token("k") is None
    await store.save_token("k", TokenRecord("tok-1", T0 + timedelta(hours=1), None, T0), T0)
    await store.save_token("k", TokenRecord("tok-2", T0 + timedelta(hours=2), "r2", T0), T0)
    await store.save_token("other", TokenRecord("tok-3", None), T0)
    assert await store.load_token("k") == TokenRecord("tok-2", T0 + timedelta(hours=2), "r2", T0)
    assert await store.load_token("other") == TokenRecord("tok-3", None)
    await store.delete_token("k")
    assert await store.load_token("k") is None
    assert await store.load_token("other") is not None


async def test_token_events_are_listed_filtered_and_counted(store: AnyStore) -> None:
    """token_events keeps fingerprints and details in order; filters by source, time and kind."""
    for i, event in enumerate(["issued", "invalidated", "refreshed"]):
        await store.add_token_event(
            TokenEvent(
                "s", T0 + timedelta(seconds=i), event, T0 + timedelta(hours=1), f"fp{i}", "d"
            )
        )
    await store.add_token_event(TokenEvent("t", T0, "issued"))
    events = await store.token_events("s")
    assert [e.event for e in events] == ["refreshed", "invalidated", "issued"]
    assert events[0] == TokenEvent("s", T0 + timedelta(seconds=2), "refreshed",
                                   T0 + timedelta(hours=1), "fp2", "d")  # fmt: skip
    assert [e.event for e in await store.token_events(since=T0 + timedelta(seconds=1))] == [
        "refreshed", "invalidated",
    ]  # fmt: skip
    assert [e.source for e in await store.token_events(event="issued")] == ["t", "s"]
    assert len(await store.token_events(event=["issued", "refreshed"], limit=2)) == 2
    assert await store.token_event_counts() == {
        ("s", "issued"): 1, ("s", "invalidated"): 1, ("s", "refreshed"): 1, ("t", "issued"): 1,
    }  # fmt: skip


async def test_needs_reauth_flag(store: AnyStore) -> None:
    """The reauth flag is set with a reason and cleared with None."""
    assert await store.source_state("s") == type(await store.source_state("s"))("s")
    await store.set_needs_reauth("s", "refresh rejected", T0)
    state = await store.source_state("s")
    assert state.needs_reauth and state.reauth_reason == "refresh rejected"
    await store.set_needs_reauth("s", None, T0)
    state = await store.source_state("s")
    assert (state.needs_reauth, state.reauth_reason) == (False, None)


async def test_a_closed_store_says_how_to_use_it(backend: Backend) -> None:
    """Using a store outside its `async with` is a RuntimeError that says so."""
    store = open_store(backend.settings)
    with pytest.raises(RuntimeError, match="async with"):
        await store.count_products("s")  # type: ignore[attr-defined]


# -- run locks ------------------------------------------------------------------------------------


async def test_run_lock_excludes_a_second_holder_until_released(backend: Backend) -> None:
    """One holder per source; a refused `hold` names the holder; released at the block's end."""
    locks, rival = run_locks(backend.settings), run_locks(backend.settings)
    async with locks.try_hold("s", "host:1:a") as held:
        assert held
        async with rival.try_hold("s", "host:2:b") as second, rival.try_hold("t", "x") as other:
            assert (second, other) == (False, True)
        with pytest.raises(SourceBusyError, match="host:1:a"):
            async with rival.hold("s", "host:2:b"):
                pass
    async with rival.try_hold("s", "host:2:b") as again:
        assert again


async def test_a_released_run_lock_is_free_at_once(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The source's next run, right after the last one let go, finds the lock free. On
    PostgreSQL the server frees a closed connection's locks only once its backend has exited,
    which may be after `close()` returns: the test holds every closed connection open to stand
    for that moment, so only an explicit unlock frees the lock in time."""
    lingering: list[psycopg.AsyncConnection[Any]] = []
    close = psycopg.AsyncConnection.close

    async def linger(conn: psycopg.AsyncConnection[Any]) -> None:
        lingering.append(conn)

    monkeypatch.setattr(psycopg.AsyncConnection, "close", linger)
    locks, rival = run_locks(backend.settings), run_locks(backend.settings)
    refused = 0
    try:
        for _ in range(3):
            async with locks.try_hold("s", "host:1:a") as held:
                assert held
            async with rival.try_hold("s", "host:2:b") as again:
                refused += not again
    finally:
        for conn in lingering:
            await close(conn)
    assert refused == 0


# -- PostgreSQL only ------------------------------------------------------------------------------


async def test_replicas_starting_at_once_create_the_schema_once() -> None:
    """Five stores opening together on an empty database: all succeed, one schema version row."""
    with throwaway_database("syncd_migrate") as url:

        async def open_and_write(i: int) -> int:
            async with PostgresStore(url) as store:
                await store.upsert_products("s", [product(f"p{i}")], T0)
                return await store.count_products("s")

        await asyncio.gather(*(open_and_write(i) for i in range(5)))
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT version FROM syncd_schema").fetchall() == [
                (SCHEMA_VERSION,)
            ]
            assert conn.execute("SELECT count(*) FROM products").fetchone() == (5,)


async def test_the_postgres_updated_at_index_is_dropped_and_the_rows_kept() -> None:
    """A PostgreSQL database from before the migration that drops `products_source_updated` (no
    read uses it; every page paid for it) loses it and keeps its products; an index an operator
    creates again afterwards stays."""
    (dropping,) = [n for n, m in enumerate(MIGRATIONS) if "DROP INDEX IF EXISTS products_" in m]
    indexes = "SELECT indexname FROM pg_indexes WHERE tablename = 'products' ORDER BY 1"
    with throwaway_database("syncd_index") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            for script in MIGRATIONS[:dropping]:
                conn.execute(script)
            conn.execute("CREATE TABLE syncd_schema (version integer NOT NULL)")
            conn.execute("INSERT INTO syncd_schema VALUES (%s)", (dropping,))
            conn.execute(
                "INSERT INTO products (source, sku, payload, content_hash, first_seen_at, "
                "last_synced_at) VALUES ('s', 'p1', '{}', 'h', now(), now())"
            )
            before = conn.execute(indexes).fetchall()
        assert ("products_source_updated",) in before
        async with PostgresStore(url) as store:
            assert await store.count_products("s") == 1
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute(indexes).fetchall() == [("products_pkey",)]
            conn.execute("CREATE INDEX products_source_updated ON products (source, updated_at)")
        async with PostgresStore(url):
            pass
        with psycopg.connect(url) as conn:
            assert ("products_source_updated",) in conn.execute(indexes).fetchall()


async def test_a_newer_postgres_schema_is_refused(postgres_url: str) -> None:
    """A database written by a newer syncd is refused with one line, and left as it was."""
    async with PostgresStore(postgres_url):
        pass
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE syncd_schema SET version = %s", (SCHEMA_VERSION + 1,))
    try:
        with pytest.raises(StoreError, match=r"newer than this syncd.*upgrade syncd"):
            async with PostgresStore(postgres_url):
                pass
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("UPDATE syncd_schema SET version = %s", (SCHEMA_VERSION,))


async def test_an_unreachable_server_is_one_line_without_the_password() -> None:
    """A server that refuses: one StoreError line naming the database and the reason, never the
    password."""
    store = PostgresStore(
        "postgresql://syncd@127.0.0.1:1/nowhere", password="hunter2", connect_timeout=0.3
    )
    with pytest.raises(StoreError) as caught:
        async with store:
            pass
    message = str(caught.value)
    assert message.startswith("cannot open database postgresql://syncd@127.0.0.1:1/nowhere: ")
    assert message.endswith("Connection refused")  # libpq's reason, not a pool timeout
    assert "\n" not in message and "hunter2" not in message


async def test_both_schemas_have_the_same_tables_and_columns(
    tmp_path: Path, postgres_url: str
) -> None:
    """The schema is one contract: a column added to one backend's migrations must reach both."""
    async with PostgresStore(postgres_url), open_store(StoreSettings(path=tmp_path / "s.db")):
        pass
    with sqlite3.connect(tmp_path / "s.db") as conn:
        names = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ).fetchall()
        lite = {t: [c[1] for c in conn.execute(f"PRAGMA table_info({t})")] for (t,) in names}
    with psycopg.connect(postgres_url) as pg:
        rows = pg.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name <> 'syncd_schema' "
            "ORDER BY table_name, ordinal_position"
        ).fetchall()
    postgres: dict[str, list[str]] = {}
    for table, column in rows:
        postgres.setdefault(table, []).append(column)
    # Leases and replicas coordinate replicas on PostgreSQL; SQLite has one process.
    for table in COORDINATION_TABLES:
        assert postgres.pop(table)
    assert postgres == lite
    assert sorted(TABLES) == sorted(lite)


async def test_a_page_postgres_cannot_hold_is_refused_whole(postgres_url: str) -> None:
    """jsonb has no U+0000: the page fails as one StoreError line and none of it is stored."""
    bad = product("p2", name="nul\x00here")
    assert "\\u0000" in bad.payload
    async with PostgresStore(postgres_url) as store:
        with pytest.raises(StoreError, match=r"^cannot store 2 products of 's': ") as caught:
            await store.commit_page("s", [product("p1"), bad], T0, PageCommit(checkpoint="c"))
        assert "\n" not in str(caught.value)
        assert await store.count_products("s") == 0
        assert (await store.source_state("s")).checkpoint is None


async def test_sources_write_concurrently_without_mixing(store: AnyStore) -> None:
    """Pages of several sources committed at once (the daemon runs sources in parallel)."""

    async def scan(source: str) -> int:
        total = 0
        for page in range(3):
            records = [product(f"p{page * 10 + i}") for i in range(1, 11)]
            counts = await store.commit_page(source, records, T0, PageCommit(checkpoint=str(page)))
            total += counts.created
        return total

    names = [f"src{i}" for i in range(6)]
    assert await asyncio.gather(*(scan(n) for n in names)) == [30] * 6
    for name in names:
        assert await store.count_products(name) == 30
        assert (await store.source_state(name)).checkpoint == "2"


async def test_a_dead_holders_run_lock_is_dropped_by_the_server(postgres_url: str) -> None:
    """The holder's connection ends (a killed process): the server frees the source at once."""
    settings = StoreSettings(url=postgres_url)
    holder, rival = run_locks(settings), run_locks(settings)
    async with holder.try_hold("s", "host:9:dead") as held:
        assert held
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            (killed,) = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'syncd run host:9:dead'"
            ).fetchone() or (0,)
        assert killed == 1
        for _ in range(100):  # the server needs a moment to end the terminated backend
            async with rival.try_hold("s", "host:2:b") as taken:
                if taken:
                    break
            await asyncio.sleep(0.01)
        assert taken


# -- tokens shared by replicas (docs/SCALING.md) ---------------------------------------------------


@pytest.fixture
async def replicas(backend: Backend) -> AsyncIterator[tuple[AnyStore, AnyStore]]:
    """Two stores on one database, as two replicas (processes) hold them."""
    async with open_store(backend.settings) as one, open_store(backend.settings) as two:
        yield one, two


async def test_one_replica_wins_the_refresh_intent(replicas: tuple[AnyStore, AnyStore]) -> None:
    """Two replicas race for the intent on one version: exactly one wins; the loser's CAS on the
    new version fails while the intent is live, and succeeds once it is stale."""
    one, two = replicas
    await one.save_token("k", TokenRecord("tok-1", T0, "r1", T0), T0)
    state = await two.token_state("k")
    assert state is not None and state.refreshing_by is None
    stale = T0 - timedelta(minutes=10)
    for _ in range(10):
        first = await one.token_state("k")
        assert first is not None
        won = await asyncio.gather(
            one.begin_token_refresh("k", first.version, "replica-1", T0, stale),
            two.begin_token_refresh("k", first.version, "replica-2", T0, stale),
        )
        assert sorted(won) == [False, True]
        after = await two.token_state("k")
        assert after is not None and after.version == first.version + 1
        assert after.refreshing_by == ("replica-1" if won[0] else "replica-2")
        assert not await two.begin_token_refresh("k", after.version, "replica-3", T0, stale)
        assert after.refreshing_by is not None
        await one.abandon_token_refresh("k", after.refreshing_by, T0)
    live = await one.token_state("k")
    assert live is not None
    assert await one.begin_token_refresh("k", live.version, "replica-1", T0, stale)
    taken = await two.token_state("k")
    assert taken is not None
    # Ten minutes on, the intent is older than `stale_before`: another replica may take it over.
    later = T0 + timedelta(minutes=11)
    assert not await two.begin_token_refresh("k", taken.version, "replica-2", later, T0)
    stale = later - timedelta(minutes=10)
    assert await two.begin_token_refresh("k", taken.version, "replica-2", later, stale)
    over = await one.token_state("k")
    assert over is not None and (over.refreshing_by, over.refresh_started_at) == (
        "replica-2",
        later,
    )
    # Saving the token ends the intent, whoever held it, and bumps the version.
    await two.save_token("k", TokenRecord("tok-2", later + timedelta(hours=1), "r2", later), later)
    saved = await one.token_state("k")
    assert saved is not None and saved.refreshing_by is None and saved.version == over.version + 1
    assert saved.token == TokenRecord("tok-2", later + timedelta(hours=1), "r2", later)


async def test_a_first_token_intent_holds_no_token(replicas: tuple[AnyStore, AnyStore]) -> None:
    """No row yet: one replica's intent is a placeholder row that `load_token` does not return."""
    one, two = replicas
    assert await one.token_state("new") is None
    won = await asyncio.gather(
        one.begin_token_refresh("new", 0, "replica-1", T0, T0),
        two.begin_token_refresh("new", 0, "replica-2", T0, T0),
    )
    assert sorted(won) == [False, True]
    state = await one.token_state("new")
    assert state is not None and state.token is None and state.refreshing_by is not None
    assert await two.load_token("new") is None
    await one.save_token("new", TokenRecord("tok", None), T0)
    assert await two.load_token("new") == TokenRecord("tok", None)


async def test_abandoning_an_intent_is_the_holders_alone(
    replicas: tuple[AnyStore, AnyStore],
) -> None:
    """Only the holder ends its intent; `spent` also drops the refresh token for everyone."""
    one, two = replicas
    await one.save_token("k", TokenRecord("tok", T0, "refresh", T0), T0)
    state = await one.token_state("k")
    assert state is not None
    assert await one.begin_token_refresh("k", state.version, "replica-1", T0, T0)
    await two.abandon_token_refresh("k", "replica-2", T0, spent=True)  # not its intent
    held = await two.token_state("k")
    assert held is not None and held.refreshing_by == "replica-1"
    assert held.token is not None and held.token.refresh_token == "refresh"
    await one.abandon_token_refresh("k", "replica-1", T0, spent=True)
    dropped = await two.token_state("k")
    assert dropped is not None and dropped.refreshing_by is None
    assert dropped.token == TokenRecord("tok", T0, None, T0)


async def test_revoking_a_token_only_touches_that_token(store: AnyStore) -> None:
    """A 401 expires the stored token only while it is still the one that was refused."""
    await store.save_token("k", TokenRecord("tok-1", T0 + timedelta(hours=1), "r", T0), T0)
    assert not await store.revoke_token("k", "tok-0", T0 + timedelta(minutes=1))
    assert await store.revoke_token("k", "tok-1", T0 + timedelta(minutes=1))
    assert await store.load_token("k") == TokenRecord("tok-1", T0 + timedelta(minutes=1), "r", T0)


async def test_token_events_name_the_replica(store: AnyStore) -> None:
    """`token_events.owner` records which replica did what."""
    await store.add_token_event(TokenEvent("s", T0, "refreshed", None, "ab", None, "host:1:x"))
    await store.add_token_event(TokenEvent("s", T0, "reused", None, "ab", "by host:1:x", "host:2"))
    assert [(e.event, e.owner) for e in await store.token_events("s")] == [
        ("reused", "host:2"),
        ("refreshed", "host:1:x"),
    ]


async def test_source_rates_round_trip(store: AnyStore) -> None:
    """A source's pace is saved, replaced and read back; an unknown source has none."""
    assert await store.source_rate("s") is None
    await store.save_source_rate(SourceRate("s", 4.0, None, T0))
    await store.save_source_rate(SourceRate("s", 2.5, T0 + timedelta(seconds=30), T0))
    await store.save_source_rate(SourceRate("t", None, None, T0))
    assert await store.source_rate("s") == SourceRate("s", 2.5, T0 + timedelta(seconds=30), T0)
    assert await store.source_rate("t") == SourceRate("t", None, None, T0)


async def test_a_call_window_round_trips_with_the_rate(store: AnyStore) -> None:
    """An AmeriCommerce source's call window is saved with its pace, replaced, and cleared."""
    window = CallWindowState(T0 + timedelta(seconds=7.25), 50, 35, 1.5)
    await store.save_source_rate(SourceRate("ac", None, None, T0, window))
    assert await store.source_rate("ac") == SourceRate("ac", None, None, T0, window)
    later = CallWindowState(T0 + timedelta(seconds=17.25), 50, 3, 0.75)
    await store.save_source_rate(SourceRate("ac", 4.0, None, T0, later))
    assert await store.source_rate("ac") == SourceRate("ac", 4.0, None, T0, later)
    await store.save_source_rate(SourceRate("ac", 4.0, None, T0))
    assert await store.source_rate("ac") == SourceRate("ac", 4.0, None, T0)


async def test_a_limit_search_round_trips_with_the_rate(store: AnyStore) -> None:
    """Where the search for an untold limit stands is saved with the pace, replaced, cleared."""
    search = SourceRate("s", 19.5, None, T0, found=RateSearch(19.75, 21.5, 2.25, 42.5))
    await store.save_source_rate(search)
    assert await store.source_rate("s") == search
    unbounded = SourceRate("s", 19.5, None, T0, found=RateSearch(19.75, 21.5))
    await store.save_source_rate(unbounded)
    assert await store.source_rate("s") == unbounded
    await store.save_source_rate(SourceRate("s", 30.0, None, T0))
    assert await store.source_rate("s") == SourceRate("s", 30.0, None, T0)


# -- history retention ([store] history_retention) ------------------------------------------------


async def add_run(
    store: AnyStore, source: str, at: datetime, status: str = "failed", kind: str = "incremental"
) -> int:
    """A run of `source` started at `at` and (unless `running`) finished a minute later."""
    run_id = await store.start_run(source, kind, at)  # type: ignore[arg-type]
    if status != "running":
        await store.finish_run(run_id, status, RunTotals(), at + timedelta(minutes=1))  # type: ignore[arg-type]
    return run_id


def run_ids(backend: Backend) -> list[int]:
    return [int(r[0]) for r in backend.rows("SELECT id FROM sync_runs ORDER BY id")]


async def test_pruning_runs_keeps_what_status_staleness_and_resume_read(
    store: AnyStore, backend: Backend
) -> None:
    """Old runs go, except a running one, each source's newest RUNS_KEPT and its newest
    succeeded run; what status, staleness and the resume guard read is unchanged."""
    a = [
        await add_run(store, "a", T0 + timedelta(hours=i), "succeeded" if i < 2 else "failed")
        for i in range(10)
    ]
    b = await add_run(store, "b", T0, "succeeded")
    c = await add_run(store, "c", T0, "running")
    last, success = await store.last_runs(), await store.runs("a", "succeeded", limit=1)
    recent = await store.runs("a", limit=RESUME_ATTEMPTS)

    assert await store.prune_runs(T0 + timedelta(days=30)) == 6
    assert run_ids(backend) == sorted([a[1], *a[-RUNS_KEPT:], b, c])
    assert await store.last_runs() == last
    assert await store.runs("a", "succeeded", limit=1) == success
    assert await store.runs("a", limit=RESUME_ATTEMPTS) == recent
    assert await store.running_sources() == ["c"]
    assert await store.prune_runs(T0 + timedelta(days=30)) == 0  # idempotent


async def test_pruning_runs_keeps_those_that_ended_after_the_cut(
    store: AnyStore, backend: Backend
) -> None:
    """A run is kept for the retention after it finished: the cut is by `finished_at`, and a
    run that started before it but finished after stays."""
    ids = [await add_run(store, "a", T0 + timedelta(days=i), "succeeded") for i in range(10)]
    long = await store.start_run("a", "full", T0 + timedelta(days=4, hours=23))
    await store.finish_run(long, "failed", RunTotals(), T0 + timedelta(days=6))
    ids += [await add_run(store, "a", T0 + timedelta(days=i)) for i in range(10, 13)]
    assert await store.prune_runs(T0 + timedelta(days=5, hours=1)) == 6
    assert run_ids(backend) == sorted([long, *ids[6:]])


async def test_pruning_runs_in_chunks_skips_kept_rows_between_them(
    store: AnyStore, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks smaller than the backlog (kept rows scattered among them) remove exactly the
    expired runs, each chunk after the last one's cursor."""
    monkeypatch.setattr(history, "HISTORY_CHUNK", 4)
    monkeypatch.setattr(postgres_history, "HISTORY_CHUNK", 4)
    # Sources with one old run each, kept, before the chunks of a busy source's runs.
    kept = [
        await add_run(store, f"quiet{i}", T0 + timedelta(minutes=i), "succeeded") for i in range(3)
    ]
    for i in range(30):
        await add_run(store, "busy", T0 + timedelta(hours=i), "succeeded" if i == 3 else "failed")
    kept += run_ids(backend)[-RUNS_KEPT:]
    busy_success = (await store.runs("busy", "succeeded", limit=1))[0].id
    assert await store.prune_runs(T0 + timedelta(days=30)) == 30 - RUNS_KEPT - 1
    assert run_ids(backend) == sorted([*kept, busy_success])


async def test_pruning_token_events_keeps_the_newest_of_each_kind_and_the_counts(
    store: AnyStore, backend: Backend
) -> None:
    """Old events go except the newest of each (source, event): the last grant `syncd status`
    shows stays, and `token_event_counts` (a Prometheus counter) never goes down."""
    kinds = ["issued", "refreshed", "refreshed", "reused", "refreshed", "failed", "reused"]
    for i, kind in enumerate(kinds):
        await store.add_token_event(TokenEvent("s", T0 + timedelta(hours=i), kind))
    await store.add_token_event(TokenEvent("t", T0, "issued"))
    counts = await store.token_event_counts()
    grant = await store.token_events("s", limit=1, event=["issued", "refreshed", "reused"])

    assert await store.prune_token_events(T0 + timedelta(days=30)) == 3
    left = backend.rows("SELECT source, event FROM token_events ORDER BY id")
    assert left == [("s", "issued"), ("s", "refreshed"), ("s", "failed"), ("s", "reused"),
                    ("t", "issued")]  # fmt: skip
    assert await store.token_event_counts() == counts
    assert await store.token_events("s", limit=1, event=["issued", "refreshed", "reused"]) == grant
    assert await store.prune_token_events(T0 + timedelta(days=30)) == 0

    await store.add_token_event(TokenEvent("s", T0 + timedelta(days=1), "refreshed"))
    assert await store.prune_token_events(T0 + timedelta(days=30)) == 1
    assert (await store.token_event_counts())["s", "refreshed"] == counts["s", "refreshed"] + 1


async def test_pruning_history_leaves_recent_rows_and_an_empty_store_alone(
    store: AnyStore,
) -> None:
    """Nothing older than the cut: nothing removed (and an empty store is no error)."""
    assert await store.prune_runs(T0) == await store.prune_token_events(T0) == 0
    for i in range(5):
        await add_run(store, "a", T0 + timedelta(hours=i))
        await store.add_token_event(TokenEvent("a", T0 + timedelta(hours=i), "reused"))
    assert await store.prune_runs(T0) == await store.prune_token_events(T0) == 0
    assert len(await store.runs("a")) == len(await store.token_events("a")) == 5


def test_the_runs_kept_cover_what_the_resume_guard_reads() -> None:
    """The engine decides whether to resume a failing scan from the last RESUME_ATTEMPTS runs."""
    assert RUNS_KEPT >= RESUME_ATTEMPTS


async def test_a_run_lock_on_an_unreachable_server_is_a_store_error_naming_it() -> None:
    """No server at the URL: taking the lock is a StoreError naming the source and the server
    (without its password), and asking for the holder answers "unknown" (None), not a crash."""
    url = "postgresql://syncd:hunter2@127.0.0.1:1/nowhere"
    locks = PostgresRunLocks(url, url, connect_timeout=1)
    with pytest.raises(StoreError, match="cannot take the run lock of 's'") as caught:
        async with locks.try_hold("s", "host:1:a"):
            pass
    assert "hunter2" not in str(caught.value)
    assert await locks.holder("s") is None
