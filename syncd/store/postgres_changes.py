"""The change feed's SQL on PostgreSQL: the outbox appended inside the page's statement, reading
it, pruning it, the export snapshot, and the LISTEN/NOTIFY wake-up of `syncd changes --follow`
(docs/CHANGES.md). The contract is SQLite's (store/changes.py); only the SQL differs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import psycopg
from psycopg.rows import TupleRow

from syncd.errors import ChangesExpiredError, StoreError
from syncd.store.base import ChangeEntry, FeedHead, ProductRecord
from syncd.store.changes import EXPORT_BATCH, PRUNE_CHUNK, expired_message
from syncd.store.rows import iso

Connection = psycopg.AsyncConnection[TupleRow]

CHANNEL = "syncd_changes"
"""The NOTIFY channel a page that appended entries signals (payload: the source's name)."""

# Appended to the page's statement (postgres._UPSERT) when the feed is on. All CTEs of a
# statement read one snapshot, so `products o` here is each row as it was before this page:
# that tells an update from a revival (probed only for rewritten rows, not for inserted ones;
# a scalar subquery, which the planner never turns into a hash of the whole table). The counter row takes the page's seqs (a rolled back
# page gives them back: no gaps), the NOTIFY is sent at commit (never for a rolled back page).
# Entries of one page are numbered in sku order.
FEED_CTE = """, changed AS (
    SELECT w.sku, w.content_hash, {payload} AS payload,
           CASE WHEN w.created THEN 'created'
                WHEN (SELECT o.deleted_at FROM products o
                      WHERE o.source = %(source)s AND o.sku = w.sku) IS NOT NULL THEN 'revived'
                ELSE 'updated' END AS op
    FROM written w
){append}"""

# What `written` returns for the feed, beyond `created`.
FEED_RETURNING = ", p.sku, p.content_hash"
FEED_RETURNING_PAYLOAD = ", p.sku, p.content_hash, p.payload"

# The counter row and the entries, after a CTE `changed(sku, content_hash, payload, op)`.
_APPEND = (
    """, counted AS (
    SELECT count(*) AS total FROM changed
), counter AS (
    INSERT INTO change_sequences AS c (source, last_seq)
    SELECT %(source)s, total FROM counted WHERE total > 0
    ON CONFLICT (source) DO UPDATE SET last_seq = c.last_seq + excluded.last_seq
    RETURNING c.last_seq, pg_notify('"""
    + CHANNEL
    + """', %(source)s)
), appended AS (
    INSERT INTO product_changes (source, seq, sku, op, run_id, at, content_hash, payload)
    SELECT %(source)s, counter.last_seq - counted.total + row_number() OVER (ORDER BY ch.sku),
           ch.sku, ch.op, %(feed_run)s, %(now)s, ch.content_hash, ch.payload
    FROM changed ch, counter, counted
)"""
)


def feed_cte(payloads: bool) -> str:
    """The CTEs that append a page's entries (after `written`), copying payloads or not."""
    return FEED_CTE.replace("{payload}", "w.payload" if payloads else "NULL::jsonb").replace(
        "{append}", _APPEND
    )


def tombstone_statement(feed: bool, payloads: bool) -> str:
    """Tombstone the live products of a source that a scan did not see, appending a `deleted`
    entry for each (with the feed on), in one statement; it returns how many were tombstoned."""
    # The plan must not depend on statistics, which lag behind a source (one the last ANALYZE
    # never saw is estimated at one row): a join of the products with the skus to tombstone
    # became a nested loop rescanning the set difference once per row of the source (2.7 s
    # for 20k products with nothing gone). So the unseen skus are one set difference (a hash
    # or sort pass; NOT EXISTS became a nested loop too), each is found by its key (a LATERAL
    # subquery with LIMIT stays a probe), and the rows are updated by their tuple ids, a TID
    # scan: no join left for the planner to choose. The source's lease keeps every other
    # writer off its rows meanwhile.
    returning = ", p.payload" if payloads else ""
    head = (
        "WITH dead AS ("
        "UPDATE products AS p SET deleted_at = %(now)s "
        "WHERE p.ctid = ANY(ARRAY("
        "SELECT q.ctid FROM ("
        "SELECT sku FROM products WHERE source = %(source)s AND deleted_at IS NULL "
        "EXCEPT SELECT sku FROM full_scan_seen "
        "WHERE source = %(source)s AND scan_id = %(scan)s) AS g "
        "CROSS JOIN LATERAL (SELECT ctid FROM products "
        "WHERE source = %(source)s AND sku = g.sku LIMIT 1) AS q)) "
        "AND p.source = %(source)s AND p.deleted_at IS NULL "
        f"RETURNING p.sku, p.content_hash{returning})"
    )
    if not feed:
        return head + " SELECT count(*) FROM dead"
    payload = "payload" if payloads else "NULL::jsonb"
    changed = (
        f", changed AS (SELECT sku, content_hash, {payload} AS payload, 'deleted' AS op FROM dead)"
    )
    return head + changed + _APPEND + " SELECT count(*) FROM dead"


async def read_changes(db: Connection, source: str, since: int, limit: int) -> list[ChangeEntry]:
    """Up to `limit` entries after `since`; ChangesExpiredError if retention removed some."""
    # An entry without its own payload shows the row's while the row still has the entry's
    # content (see store/changes.py); jsonb comes back as PostgreSQL renders it.
    # The row's payload by a correlated subquery (an index probe per entry): a join could
    # read the whole catalog for a batch of 500.
    cursor = await db.execute(
        "SELECT c.source, c.seq, c.sku, c.op, c.run_id, c.at, c.content_hash, "
        "coalesce(c.payload, (SELECT p.payload FROM products p WHERE p.source = c.source "
        "AND p.sku = c.sku AND p.content_hash = c.content_hash))::text "
        "FROM product_changes c WHERE c.source = %s AND c.seq > %s ORDER BY c.seq LIMIT %s",
        (source, since, limit),
    )
    rows = await cursor.fetchall()
    # The head after the entries: a prune in between refuses entries it may have read whole,
    # never hands out a batch with a hole in it.
    head = await read_head(db, source)
    if since < head.pruned_through:
        raise ChangesExpiredError(expired_message(source, since, head.pruned_through))
    return [_entry(row) for row in rows]


async def read_head(db: Connection, source: str) -> FeedHead:
    """Where the feed of `source` stands (zeros if it never had an entry)."""
    cursor = await db.execute(
        "SELECT last_seq, pruned_through FROM change_sequences WHERE source = %s", (source,)
    )
    row = await cursor.fetchone()
    return FeedHead(source, int(row[0]), int(row[1])) if row else FeedHead(source)


async def read_heads(db: Connection) -> dict[str, FeedHead]:
    """Every source's head."""
    cursor = await db.execute(
        "SELECT source, last_seq, pruned_through FROM change_sequences ORDER BY source"
    )
    return {r[0]: FeedHead(r[0], int(r[1]), int(r[2])) for r in await cursor.fetchall()}


async def prune_cut(db: Connection, head: FeedHead, before: datetime) -> int:
    """The highest seq of `head.source` whose entry is older than `before` (else the current
    `pruned_through`): a binary search on the primary key, as on SQLite (no index on `at`)."""
    lo, hi = head.pruned_through, head.last_seq  # invariant: seq lo is old (or pruned)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        cursor = await db.execute(
            "SELECT at FROM product_changes WHERE source = %s AND seq >= %s ORDER BY seq LIMIT 1",
            (head.source, mid),
        )
        row = await cursor.fetchone()
        if row is not None and row[0] < before:
            lo = mid
        else:
            hi = mid - 1
    return lo


async def prune_chunk(db: Connection, source: str, through: int) -> tuple[int, bool]:
    """Delete up to PRUNE_CHUNK of the oldest entries with seq <= `through`, in the caller's
    transaction, and move `pruned_through` along; return (how many were deleted, whether
    entries up to `through` remain)."""
    cursor = await db.execute(
        "SELECT pruned_through FROM change_sequences WHERE source = %s FOR UPDATE", (source,)
    )
    row = await cursor.fetchone()
    pruned = int(row[0]) if row else 0
    upto = min(through, pruned + PRUNE_CHUNK)
    if upto <= pruned:
        return 0, False
    cursor = await db.execute(
        "DELETE FROM product_changes WHERE source = %s AND seq > %s AND seq <= %s",
        (source, pruned, upto),
    )
    await db.execute(
        "UPDATE change_sequences SET pruned_through = %s WHERE source = %s", (upto, source)
    )
    return max(cursor.rowcount, 0), upto < through


def _entry(row: tuple[Any, ...]) -> ChangeEntry:
    return ChangeEntry(
        source=row[0],
        seq=int(row[1]),
        sku=row[2],
        op=row[3],
        run_id=None if row[4] is None else int(row[4]),
        at=str(iso(row[5])),
        content_hash=row[6],
        payload=row[7],
    )


@dataclass(slots=True)
class PostgresSnapshot:
    """A REPEATABLE READ, read-only transaction: the products and the seq agree, and writers go
    on meanwhile (MVCC)."""

    db: Connection
    source: str
    seq: int = 0

    async def products(self) -> AsyncIterator[ProductRecord]:
        """The live products of the source, by sku, EXPORT_BATCH rows at a time (server-side
        cursor: the catalog is never loaded whole)."""
        async with self.db.cursor(name="syncd_export") as cursor:
            await cursor.execute(
                "SELECT sku, id, name, price, status, type_id, updated_at, payload::text, "
                "content_hash FROM products WHERE source = %s AND deleted_at IS NULL ORDER BY sku",
                (self.source,),
            )
            while rows := await cursor.fetchmany(EXPORT_BATCH):
                for r in rows:
                    yield ProductRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8])


async def begin_snapshot(db: Connection, source: str) -> PostgresSnapshot:
    """Start the snapshot's transaction on `db` (autocommit off for its duration)."""
    await db.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    head = await read_head(db, source)  # the first read fixes the snapshot
    return PostgresSnapshot(db, source, head.last_seq)


class ChangeListener:
    """A dedicated connection that LISTENs for pages that appended entries; `wait` returns on
    the first NOTIFY or after its timeout (so a caller also polls, should a notice be missed:
    the connection dropped, or the entries were written by a store with the feed's NOTIFY off).
    Use as `async with ChangeListener(conninfo) as listener:`."""

    def __init__(self, conninfo: str, connect_timeout: float = 10.0) -> None:
        self._conninfo = conninfo
        self._connect_timeout = connect_timeout
        self._db: Connection | None = None
        self.lost = False
        """Whether the LISTEN connection failed: `wait` then only waits (the caller polls)."""

    async def __aenter__(self) -> Self:
        try:
            self._db = await psycopg.AsyncConnection.connect(
                self._conninfo,
                autocommit=True,
                connect_timeout=max(2, round(self._connect_timeout)),
            )
        except psycopg.Error as exc:
            raise StoreError(f"cannot LISTEN for new entries: {_first_line(exc)}") from exc
        try:
            await self._db.execute(f"LISTEN {CHANNEL}")
        except BaseException as exc:
            await self._db.close()
            if isinstance(exc, psycopg.Error):
                raise StoreError(f"cannot LISTEN for new entries: {_first_line(exc)}") from exc
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    async def wait(self, seconds: float) -> list[str]:
        """The sources notified within `seconds` (stops at the first notice; empty when none
        came)."""
        if self._db is None:
            raise RuntimeError("ChangeListener is not open; use it inside 'async with'")
        if not self.lost:
            try:
                return [n.payload async for n in self._db.notifies(timeout=seconds, stop_after=1)]
            except psycopg.Error:
                # The connection dropped (a server restart, a terminated backend): from now on
                # the caller's polling is what finds new entries. Never a busy loop.
                self.lost = True
        await asyncio.sleep(seconds)
        return []


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
