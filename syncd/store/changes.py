"""The change feed's SQL on SQLite: appending to the outbox inside a product write, reading it,
pruning it, and the consistent snapshot `syncd export` streams (docs/CHANGES.md)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiosqlite

from syncd.errors import ChangesExpiredError
from syncd.store.base import ChangeEntry, ChangeOp, FeedHead, ProductRecord
from syncd.store.rows import json_rows

PRUNE_CHUNK = 10_000
"""Entries deleted per transaction while pruning: a long delete must not stall the page writes."""

EXPORT_BATCH = 1_000
"""Rows fetched at a time while streaming an export."""

CHANGE_COLUMNS = "source, seq, sku, op, run_id, at, content_hash, payload"
PRODUCT_COLUMNS = "sku, id, name, price, status, type_id, updated_at, payload, content_hash"


def expired_message(source: str, since: int, pruned_through: int) -> str:
    """The one line a reader behind retention gets: what is gone and how to resync."""
    return (
        f"the change feed of {source!r} no longer holds the entries after seq {since}: "
        f"retention removed every entry up to seq {pruned_through}. Resync from the "
        f"table with 'syncd export {source}', then continue with "
        f"'syncd changes {source} --since <the seq it reports>'"
    )


def stamp(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds, as in `product_changes.at`."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _reserve(db: sqlite3.Connection, source: str, count: int) -> int:
    """Take `count` seqs for `source` in the caller's transaction; return the last seq before
    them. A counter row (not AUTOINCREMENT) so that seqs are per source and have no gaps: a
    transaction that rolls back gives its seqs back with everything else."""
    (row,) = db.execute(
        "INSERT INTO change_sequences (source, last_seq) VALUES (?, ?) ON CONFLICT (source) "
        "DO UPDATE SET last_seq = last_seq + excluded.last_seq RETURNING last_seq",
        (source, count),
    ).fetchall()
    return int(row[0]) - count


def append_changes(
    db: sqlite3.Connection,
    source: str,
    changed: Sequence[tuple[ChangeOp, ProductRecord]],
    run_id: int | None,
    at: str,
    *,
    payloads: bool,
) -> None:
    """Append one entry per changed product, in the caller's transaction (one executemany) on
    the connection's own thread.

    Without `payloads` the entry does not copy the payload: a read takes it from `products`
    while the row still has the entry's content hash (see `read_changes`). Copying it doubles
    the bytes a full sync writes (docs/PERFORMANCE.md)."""
    if not changed:
        return
    last = _reserve(db, source, len(changed))
    if payloads:
        db.executemany(
            f"INSERT INTO product_changes ({CHANGE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",
            [
                (source, last + i, r.sku, op, run_id, at, r.content_hash, r.payload)
                for i, (op, r) in enumerate(changed, start=1)
            ],
        )
        return
    # The page's entries as rows of one JSON array, in one statement: executed once per entry,
    # the statement would bind and copy seven values and run its program again for each.
    entries = json_rows([(r.sku, op, r.content_hash) for op, r in changed])
    if entries is not None:
        db.execute(
            f"INSERT INTO product_changes ({CHANGE_COLUMNS}) SELECT ?1, ?2 + key, "
            "json_extract(value, '$[0]'), json_extract(value, '$[1]'), ?3, ?4, "
            "json_extract(value, '$[2]'), NULL FROM json_each(?5)",
            (source, last + 1, run_id, at, entries),
        )
        return
    # NULL written in the statement, not bound: sqlite3 looks for an adapter for every bound
    # None (two failed attribute lookups, each formatting an AttributeError), once per entry.
    db.executemany(
        f"INSERT INTO product_changes ({CHANGE_COLUMNS}) VALUES (?,?,?,?,?,?,?,NULL)",
        [
            (source, last + i, r.sku, op, run_id, at, r.content_hash)
            for i, (op, r) in enumerate(changed, start=1)
        ],
    )


def append_tombstones(
    db: sqlite3.Connection,
    source: str,
    skus: Sequence[str],
    run_id: int | None,
    at: str,
    *,
    payloads: bool,
) -> None:
    """Append a `deleted` entry (with its last payload) for each of `skus`, stored products about
    to be tombstoned, numbered in the order given; in the tombstoning transaction."""
    if not skus:
        return
    last = _reserve(db, source, len(skus))
    db.executemany(
        f"INSERT INTO product_changes ({CHANGE_COLUMNS}) "
        "SELECT source, ?, sku, 'deleted', ?, ?, content_hash, "
        f"{'payload' if payloads else 'NULL'} FROM products WHERE source = ? AND sku = ?",
        [(last + n, run_id, at, source, sku) for n, sku in enumerate(skus, start=1)],
    )


async def read_changes(
    db: aiosqlite.Connection, source: str, since: int, limit: int
) -> list[ChangeEntry]:
    """Up to `limit` entries after `since`; ChangesExpiredError if retention removed some."""
    # An entry without its own payload shows the row's while the row still has the entry's
    # content: an entry a later one superseded shows null, and that later one carries it.
    async with db.execute(
        "SELECT c.source, c.seq, c.sku, c.op, c.run_id, c.at, c.content_hash, "
        "coalesce(c.payload, CASE WHEN p.content_hash = c.content_hash THEN p.payload END) "
        "FROM product_changes c LEFT JOIN products p ON p.source = c.source AND p.sku = c.sku "
        "WHERE c.source = ? AND c.seq > ? ORDER BY c.seq LIMIT ?",
        (source, since, limit),
    ) as cursor:
        rows = list(await cursor.fetchall())
    # The head is read after the entries: a prune between the two reads makes this refuse
    # entries it may have read whole, never hand out a batch with a hole in it.
    head = await read_head(db, source)
    if since < head.pruned_through:
        raise ChangesExpiredError(expired_message(source, since, head.pruned_through))
    return [_entry(row) for row in rows]


async def read_head(db: aiosqlite.Connection, source: str) -> FeedHead:
    """Where the feed of `source` stands (zeros if it never had an entry)."""
    async with db.execute(
        "SELECT last_seq, pruned_through FROM change_sequences WHERE source = ?", (source,)
    ) as cursor:
        row = await cursor.fetchone()
    return FeedHead(source, int(row[0]), int(row[1])) if row else FeedHead(source)


async def read_heads(db: aiosqlite.Connection) -> dict[str, FeedHead]:
    """Every source's head."""
    async with db.execute(
        "SELECT source, last_seq, pruned_through FROM change_sequences ORDER BY source"
    ) as cursor:
        rows = await cursor.fetchall()
    return {r[0]: FeedHead(r[0], int(r[1]), int(r[2])) for r in rows}


async def prune_cut(db: aiosqlite.Connection, head: FeedHead, before: str) -> int:
    """The highest seq of `head.source` whose entry is older than `before` (else the current
    `pruned_through`). A binary search on the primary key: `at` grows with seq, and reading
    `at` across the table would read every payload with it."""
    lo, hi = head.pruned_through, head.last_seq  # invariant: seq lo is old (or pruned)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        async with db.execute(
            "SELECT at FROM product_changes WHERE source = ? AND seq >= ? ORDER BY seq LIMIT 1",
            (head.source, mid),
        ) as cursor:
            row = await cursor.fetchone()
        if row is not None and row[0] < before:
            lo = mid
        else:
            hi = mid - 1
    return lo


async def prune_chunk(db: aiosqlite.Connection, source: str, through: int) -> tuple[int, bool]:
    """Delete up to PRUNE_CHUNK of the oldest entries with seq <= `through`, in the caller's
    transaction, and move `pruned_through` along; return (how many were deleted, whether
    entries up to `through` remain)."""
    head = await read_head(db, source)
    upto = min(through, head.pruned_through + PRUNE_CHUNK)
    if upto <= head.pruned_through:
        return 0, False
    cursor = await db.execute(
        "DELETE FROM product_changes WHERE source = ? AND seq <= ?", (source, upto)
    )
    await db.execute(
        "UPDATE change_sequences SET pruned_through = ? WHERE source = ?", (upto, source)
    )
    return max(cursor.rowcount, 0), upto < through


def _entry(row: sqlite3.Row | tuple[Any, ...]) -> ChangeEntry:
    return ChangeEntry(
        source=row[0],
        seq=int(row[1]),
        sku=row[2],
        op=row[3],
        run_id=row[4],
        at=row[5],
        content_hash=row[6],
        payload=row[7],
    )


@dataclass(slots=True)
class SqliteSnapshot:
    """A read transaction on its own connection: the products and the seq agree, and writers
    (WAL) go on meanwhile."""

    db: aiosqlite.Connection
    source: str
    seq: int = 0

    async def products(self) -> AsyncIterator[ProductRecord]:
        """The live products of the source, by sku, EXPORT_BATCH rows at a time."""
        async with self.db.execute(
            f"SELECT {PRODUCT_COLUMNS} FROM products WHERE source = ? AND deleted_at IS NULL "
            "ORDER BY sku",
            (self.source,),
        ) as cursor:
            while rows := await cursor.fetchmany(EXPORT_BATCH):
                for r in rows:
                    yield ProductRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8])


async def open_snapshot(path: Path, source: str, busy_timeout: float) -> SqliteSnapshot:
    """Open a read-only connection and start the read transaction of a snapshot."""
    uri = f"file:{quote(str(path))}?mode=ro"
    db = await aiosqlite.connect(uri, uri=True, timeout=busy_timeout)
    try:
        await db.execute("BEGIN")
        head = await read_head(db, source)  # the first read fixes the snapshot (WAL)
    except BaseException:
        await db.close()
        raise
    return SqliteSnapshot(db, source, head.last_seq)
