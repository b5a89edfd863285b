"""PostgreSQL's plans for a scan's reads and its tombstones: the work they do follows what they
are asked about, not the catalog, even when the planner is misinformed. Its statistics lag
behind a source (one the last ANALYZE never saw is estimated at one row), and a plan kept from
when a table was empty would read it whole for every row (store/postgres.py, `SCAN_VIEW`).

The work is read off the plans PostgreSQL executes (EXPLAIN ANALYZE, rolled back) or off its
table statistics, never off a clock."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from syncd.store.postgres import SCAN_VIEW, UNSEEN, PostgresStore
from syncd.store.postgres_changes import tombstone_statement
from tests.postgres_support import throwaway_database, unavailable

CATALOG = 5000  # products of the source under test
PAGE = 100
SCAN = 7
GONE = 10  # of the catalog's products, the last ones are not marked seen by the scan
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def url() -> Iterator[str]:
    """A database of its own: the statistics these tests set would mislead other tests."""
    with throwaway_database("syncd_plans") as database:
        yield database


@pytest.fixture
async def store(url: str) -> AsyncIterator[PostgresStore]:
    """The store on it, with one connection: every read runs on the same server process."""
    async with PostgresStore(url, pool_size=1) as opened:
        yield opened


def sku(n: int) -> str:
    return f"SKU{n:06d}"


def run(url: str, *statements: str) -> None:
    """Statements outside a transaction (VACUUM needs that)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def fill(url: str, source: str, count: int, *, marked: int = 0) -> None:
    """`count` live products of `source`, the first `marked` of them marked seen by SCAN."""
    skus = [sku(n) for n in range(count)]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO products (source, sku, id, payload, content_hash, first_seen_at, "
            "last_synced_at) SELECT %s, k, n, '{}', 'h', now(), now() "
            "FROM unnest(%s::text[]) WITH ORDINALITY AS t(k, n)",
            (source, skus),
        )
        conn.execute(
            "INSERT INTO full_scan_seen (source, scan_id, sku) "
            "SELECT %s, %s, k FROM unnest(%s::text[]) AS t(k)",
            (source, SCAN, skus[:marked]),
        )


def stale_statistics(url: str) -> None:
    """Statistics taken before the source under test existed: twenty products of another."""
    fill(url, "old", 20)
    run(url, "VACUUM ANALYZE products", "VACUUM ANALYZE full_scan_seen")


def work(url: str, query: str, params: dict[str, Any]) -> tuple[int, int]:
    """(rows every node of the executed plan handled, the most times any node ran); the
    statement is rolled back."""
    with psycopg.connect(url) as conn:
        cursor = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {query}", params)
        row = cursor.fetchone()
        conn.rollback()
    assert row is not None
    plan = row[0] if isinstance(row[0], list) else json.loads(row[0])
    rows, loops = 0, 0
    pending = [plan[0]["Plan"]]
    while pending:
        node = pending.pop()
        ran = int(node.get("Actual Loops", 0))
        handled = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
        rows += int(handled * ran)
        loops = max(loops, ran)
        pending.extend(node.get("Plans", []))
    return rows, loops


def page() -> list[str]:
    return [sku(n) for n in range(CATALOG - PAGE, CATALOG)]  # the last page: GONE unmarked


async def test_a_page_is_read_by_key_when_the_statistics_predate_the_source(
    url: str, store: PostgresStore
) -> None:
    stale_statistics(url)
    fill(url, "new", CATALOG, marked=CATALOG - GONE)
    params = {"source": "new", "scan": SCAN, "skus": page()}
    for query in (SCAN_VIEW, UNSEEN):
        rows, loops = work(url, query, params)
        # A few rows per sku of the page (the sku, its product, its mark; each counted at every
        # level of the plan it passes), never the catalog (5,100 rows when the skus were a
        # filter over the source's products, 4,990 over its marks).
        assert rows <= 10 * PAGE, (rows, query)
        assert loops <= PAGE, (loops, query)


async def test_the_reads_answer_the_same(url: str, store: PostgresStore) -> None:
    stale_statistics(url)
    fill(url, "new", CATALOG, marked=CATALOG - GONE)
    skus = [*page(), "absent"]
    view = await store.scan_view("new", SCAN, skus)
    assert sorted(view) == page()  # an absent sku has no entry
    assert sum(1 for row in view.values() if row.seen) == PAGE - GONE
    assert all(row.live and row.content_hash == "h" for row in view.values())
    assert await store.unseen("new", SCAN, skus) == [*page()[-GONE:], "absent"]


async def test_tombstones_do_work_in_proportion_to_what_is_gone(
    url: str, store: PostgresStore
) -> None:
    stale_statistics(url)
    fill(url, "new", CATALOG, marked=CATALOG - GONE)
    params = {"source": "new", "scan": SCAN, "now": NOW, "feed_run": None}
    rows, loops = work(url, tombstone_statement(True, False), params)
    # One pass over the source's products and marks to find what is gone, then a probe for
    # each gone sku: no part of the statement runs once per product of the catalog (joined,
    # the set difference was rescanned 5,000 times: 135k rows handled).
    assert loops <= GONE, loops
    assert rows <= 10 * CATALOG, rows
    deleted = await store.finish_full_scan("new", SCAN, NOW, tombstone=True, watermark=None)
    assert deleted == GONE
    with psycopg.connect(url) as conn:
        dead = conn.execute(
            "SELECT sku FROM products WHERE deleted_at IS NOT NULL ORDER BY sku"
        ).fetchall()
        feed = conn.execute("SELECT count(*) FROM product_changes WHERE op = 'deleted'").fetchone()
    assert [row[0] for row in dead] == [sku(n) for n in range(CATALOG - GONE, CATALOG)]
    assert feed == (GONE,)


def seq_tuples_read(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT seq_tup_read FROM pg_stat_user_tables WHERE relname = %s", (table,)
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_no_plan_is_kept_from_when_the_marks_were_empty(
    url: str, store: PostgresStore
) -> None:
    """A daemon's pooled connection outlives a scan: the marks table is vacuumed empty after
    one, the next scan's first pages are read while it is empty, and it then fills."""
    (version,) = (await store.fetch("SHOW server_version_num"))[0]
    if int(version) < 150000:  # a skip proves nothing: under CI this fails instead
        unavailable("pg_stat_force_next_flush() needs PostgreSQL 15 or later")
    fill(url, "new", CATALOG)
    run(url, "VACUUM ANALYZE products", "VACUUM ANALYZE full_scan_seen")
    for _ in range(12):  # past psycopg's and the server's thresholds for keeping a plan
        await store.scan_view("new", SCAN, page())
    assert await store.mark_live_seen("new", SCAN) == CATALOG  # the scan fills the marks
    await store.fetch("SELECT pg_stat_force_next_flush()")
    before = seq_tuples_read(url, "full_scan_seen")
    for _ in range(10):
        view = await store.scan_view("new", SCAN, page())
        assert all(row.seen for row in view.values())
    # The store's one connection reports its reads now, not at its next idle moment.
    await store.fetch("SELECT pg_stat_force_next_flush()")
    # Kept, the plan made on the empty table would scan the marks once per sku of each page:
    # 10 x 100 x 5,000 rows. Planned anew, the marks are probed by key.
    assert seq_tuples_read(url, "full_scan_seen") - before < CATALOG
