"""The change feed of a store: one entry per change in the write's transaction, no gaps, pruning
that never leaves a silent gap, webhook cursors, the export snapshot.

Written against the `ChangeFeed` protocol through the `feed_store` fixture so that every backend
can be added to its parameters.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from syncd.errors import ChangesExpiredError, StoreError
from syncd.sources.base import make_record
from syncd.store import PageCommit, ProductRecord, RunProgress, SqliteStore
from syncd.store.base import ChangeEntry
from syncd.store.postgres import PostgresStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def product(sku: str, price: float = 10.0) -> ProductRecord:
    item = {"sku": sku, "id": int(sku[1:]), "name": "Widget", "price": price, "status": 1}
    return make_record(
        item, sku=sku, id=int(sku[1:]), name="Widget", price=price, status=1, type_id="simple",
        updated_at="2026-01-01 00:00:00",
    )  # fmt: skip


@pytest.fixture(params=["sqlite", "sqlite-payloads", "postgres", "postgres-payloads"])
async def feed_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """A fresh store of each backend that implements the change feed, in both payload modes."""
    payloads = request.param.endswith("-payloads")
    store: SqliteStore | PostgresStore
    if request.param.startswith("postgres"):
        store = PostgresStore(request.getfixturevalue("postgres_url"), change_payloads=payloads)
    else:
        store = SqliteStore(tmp_path / "syncd.db", change_payloads=payloads)
    async with store:
        store.test_payloads = payloads  # type: ignore[union-attr]
        yield store


def same_json(payload: str | None, expected: str | None) -> bool:
    """Payloads compared as JSON values: PostgreSQL stores jsonb and renders it its own way."""
    if payload is None or expected is None:
        return payload is expected
    return bool(json.loads(payload) == json.loads(expected))


def replay(entries: list[ChangeEntry]) -> dict[str, tuple[str, bool]]:
    """sku -> (content hash, live) as the feed says the table should be."""
    table: dict[str, tuple[str, bool]] = {}
    for e in entries:
        table[e.sku] = (e.content_hash, e.op != "deleted")
    return table


async def test_each_change_appends_one_entry_in_seq_order(feed_store: Any) -> None:
    """created, updated, unchanged (nothing), deleted by a full scan, revived."""
    store = feed_store
    await store.commit_page("s", [product("p1"), product("p2")], T0, PageCommit(run=RunProgress(1)))
    await store.commit_page(
        "s", [product("p1"), product("p2", 12.0)], T0, PageCommit(scan_id=7, run=RunProgress(2))
    )
    await store.finish_full_scan("s", 7, T0, tombstone=True, watermark=None, run_id=2)
    await store.commit_page("s", [product("p3")], T0, PageCommit(scan_id=8, run=RunProgress(3)))
    await store.finish_full_scan("s", 8, T0, tombstone=True, watermark=None, run_id=3)
    await store.commit_page(
        "s", [product("p1")], T0 + timedelta(seconds=1), PageCommit(run=RunProgress(4))
    )
    entries = await store.changes("s", 0, 100)
    assert [(e.seq, e.sku, e.op, e.run_id) for e in entries] == [
        (1, "p1", "created", 1),
        (2, "p2", "created", 1),
        (3, "p2", "updated", 2),
        (4, "p3", "created", 3),
        (5, "p1", "deleted", 3),
        (6, "p2", "deleted", 3),
        (7, "p1", "revived", 4),
    ]
    deleted = entries[5]
    assert same_json(deleted.payload, product("p2", 12.0).payload)  # the last payload stored
    # Superseded: a copy of its own, or null where the entry only refers to the row.
    assert same_json(entries[1].payload, product("p2").payload if store.test_payloads else None)
    assert same_json(entries[6].payload, product("p1").payload)  # the row's current content
    assert deleted.content_hash == product("p2", 12.0).content_hash
    assert entries[0].at == "2026-01-01T00:00:00.000Z"
    assert entries[-1].at == "2026-01-01T00:00:01.000Z"
    assert replay(entries) == {
        "p1": (product("p1").content_hash, True),
        "p2": (product("p2", 12.0).content_hash, False),
        "p3": (product("p3").content_hash, True),
    }
    assert [e.seq for e in await store.changes("s", 5, 1)] == [6]
    heads = await store.feed_heads()
    assert (heads["s"].last_seq, heads["s"].pruned_through) == (7, 0)


async def test_sources_have_their_own_gap_free_seqs(feed_store: Any) -> None:
    """Each source counts from 1; a page that changes nothing takes no seq."""
    store = feed_store
    await store.upsert_products("a", [product("p1")], T0)
    await store.upsert_products("b", [product("p1"), product("p2")], T0)
    await store.upsert_products("a", [product("p1")], T0)
    await store.upsert_products("a", [product("p2")], T0)
    assert [e.seq for e in await store.changes("a", 0, 10)] == [1, 2]
    assert [e.seq for e in await store.changes("b", 0, 10)] == [1, 2]


async def test_a_failed_write_takes_no_seq(feed_store: Any) -> None:
    """The entries roll back with the products: the next write gets the next seq, no hole."""
    store = feed_store
    await store.upsert_products("s", [product("p1")], T0)
    bad = ProductRecord("p2", 2, None, None, None, None, None, None, "h")  # type: ignore[arg-type]
    with pytest.raises(StoreError, match=r"NOT NULL|not-null"):
        await store.upsert_products("s", [bad], T0)
    await store.upsert_products("s", [product("p3")], T0)
    assert [(e.seq, e.sku) for e in await store.changes("s", 0, 10)] == [(1, "p1"), (2, "p3")]


async def test_pruning_by_age_and_a_reader_behind_it_is_told_to_resync(feed_store: Any) -> None:
    store = feed_store
    for day in range(5):
        await store.upsert_products("s", [product("p1", price=day)], T0 + timedelta(days=day))
    removed = await store.prune_changes(T0 + timedelta(days=2))
    assert removed == 2
    head = (await store.feed_heads())["s"]
    assert (head.last_seq, head.pruned_through) == (5, 2)
    assert [e.seq for e in await store.changes("s", 2, 10)] == [3, 4, 5]
    with pytest.raises(ChangesExpiredError, match=r"syncd export s.*--since"):
        await store.changes("s", 1, 10)
    assert await store.prune_changes(T0 + timedelta(days=2)) == 0  # idempotent
    assert await store.prune_changes(T0 + timedelta(days=30)) == 3
    assert await store.changes("s", 5, 10) == []
    await store.upsert_products("s", [product("p1", price=99)], T0 + timedelta(days=31))
    assert [e.seq for e in await store.changes("s", 5, 10)] == [6]  # seqs go on


async def test_pruning_only_the_given_sources(feed_store: Any) -> None:
    """After a run the daemon prunes only the source that ran: the others keep their entries."""
    store = feed_store
    for source in ("a", "b"):
        await store.upsert_products(source, [product("p1")], T0)
    assert await store.prune_changes(T0 + timedelta(days=1), ["a"]) == 1
    heads = await store.feed_heads()
    assert (heads["a"].pruned_through, heads["b"].pruned_through) == (1, 0)
    assert await store.prune_changes(T0 + timedelta(days=1), []) == 0
    assert await store.prune_changes(T0 + timedelta(days=1)) == 1  # every source


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_feed_can_be_switched_off(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store: SqliteStore | PostgresStore
    if backend == "postgres":
        store = PostgresStore(request.getfixturevalue("postgres_url"), changes=False)
    else:
        store = SqliteStore(tmp_path / "off.db", changes=False)
    async with store:
        await store.upsert_products("s", [product("p1")], T0)
        await store.commit_page("s", [product("p2")], T0, PageCommit(scan_id=1))
        assert await store.finish_full_scan("s", 1, T0, tombstone=True, watermark=None) == 1
        assert await store.changes("s", 0, 10) == []
        assert await store.feed_heads() == {}


async def test_webhook_cursors_are_per_webhook_and_source(feed_store: Any) -> None:
    store = feed_store
    assert await store.webhook_cursors("hook") == {}
    await store.set_webhook_cursor("hook", "a", 3, T0)
    await store.set_webhook_cursor("hook", "a", 5, T0)
    await store.set_webhook_cursor("hook", "b", 1, T0)
    await store.set_webhook_cursor("other", "a", 9, T0)
    assert await store.webhook_cursors("hook") == {"a": 5, "b": 1}


async def test_snapshot_streams_live_products_with_the_seq_they_match(feed_store: Any) -> None:
    """Writes after the snapshot began are neither in its products nor in its seq."""
    store = feed_store
    await store.upsert_products("s", [product("p1"), product("p2"), product("p3")], T0)
    await store.commit_page("s", [product("p1")], T0, PageCommit(scan_id=1))
    await store.finish_full_scan("s", 1, T0, tombstone=True, watermark=None)
    async with store.snapshot("s") as snap:
        await store.upsert_products("s", [product("p4")], T0)
        skus = [p.sku async for p in snap.products()]
        assert (snap.seq, skus) == (5, ["p1"])
    async with store.snapshot("s") as snap:
        assert snap.seq == 6


async def test_a_postgres_page_that_appends_entries_notifies_its_source(postgres_url: str) -> None:
    """The NOTIFY is sent at commit, by pages that appended entries only; a lost LISTEN
    connection degrades to waiting (the caller polls), never to an error or a busy loop."""
    async with PostgresStore(postgres_url) as store, store.listener() as listener:
        await store.upsert_products("s", [product("p1")], T0)
        assert await listener.wait(10) == ["s"]
        await store.upsert_products("s", [product("p1")], T0)  # unchanged: no entry, no notice
        assert await listener.wait(0.05) == []
        async with store._opened.connection() as db:
            await db.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query LIKE 'LISTEN%%'"
            )
        assert await listener.wait(0.05) == []
        assert listener.lost
        assert await listener.wait(0.01) == []
