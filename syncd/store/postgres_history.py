"""Retention of run history and token events on PostgreSQL: the rules of store/history.py, in
bounded chunks, safe when several replicas prune at once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

import psycopg
from psycopg.rows import TupleRow

from syncd.store.history import (
    EXPIRED_EVENTS,
    EXPIRED_RUNS,
    FIRST_AT,
    HISTORY_CHUNK,
    MAX_ID,
    RUNS_KEPT,
    HistoryTable,
    pg,
)

Connection = psycopg.AsyncConnection[TupleRow]

PostgresChunk = Callable[[Connection, int, int, datetime], Awaitable[tuple[int, int, bool]]]
"""One chunk of a prune: (connection, after, cut, before) -> (deleted, next after, more)."""

# The planner costs the chunk's scan as if it read the whole table (it stops after a chunk), and
# JIT-compiles it: ~0.9 s a chunk spent compiling a query that runs in ~0.1 s.
NO_JIT = "SET LOCAL jit = off"

# Deleted and tallied in one statement: a replica pruning the same rows at once deletes none of
# them twice, so each event is tallied exactly once.
_DELETE_EVENTS = """
WITH gone AS (DELETE FROM token_events WHERE id = ANY(%s) RETURNING source, event),
tallied AS (
    INSERT INTO token_event_tallies (source, event, pruned)
    SELECT source, event, count(*) FROM gone GROUP BY source, event
    ON CONFLICT (source, event) DO UPDATE SET pruned = token_event_tallies.pruned + excluded.pruned
)
SELECT count(*) FROM gone
"""


async def history_cut(db: Connection, table: HistoryTable, before: datetime) -> int:
    """The highest id of `table` whose row is older than `before` (0: none); a binary search on
    the primary key, as on SQLite."""
    row = await (await db.execute(MAX_ID[table])).fetchone()
    lo, hi = 0, int(row[0]) if row else 0  # invariant: id lo is old
    while lo < hi:
        mid = (lo + hi + 1) // 2
        probe = await (await db.execute(pg(FIRST_AT[table]), (mid,))).fetchone()
        if probe is not None and probe[0] < before:
            lo = mid
        else:
            hi = mid - 1
    return lo


async def prune_runs_chunk(
    db: Connection, after: int, cut: int, before: datetime
) -> tuple[int, int, bool]:
    """Delete up to HISTORY_CHUNK expired runs with ids in (`after`, `cut`], in the caller's
    transaction; return (how many, the id to go on after, whether more may remain)."""
    await db.execute(NO_JIT)
    cursor = await db.execute(pg(EXPIRED_RUNS), (after, cut, before, RUNS_KEPT - 1, HISTORY_CHUNK))
    ids = [int(r[0]) for r in await cursor.fetchall()]
    if not ids:
        return 0, cut, False
    deleted = await db.execute(
        "DELETE FROM sync_runs WHERE id = ANY(%s) AND status <> 'running'", (ids,)
    )
    return max(deleted.rowcount, 0), ids[-1], len(ids) == HISTORY_CHUNK


async def prune_token_events_chunk(
    db: Connection, after: int, cut: int, before: datetime
) -> tuple[int, int, bool]:
    """Delete up to HISTORY_CHUNK expired token events with ids in (`after`, `cut`] and add them
    to the tallies, in the caller's transaction; return as `prune_runs_chunk` does."""
    await db.execute(NO_JIT)
    cursor = await db.execute(pg(EXPIRED_EVENTS), (after, cut, before, HISTORY_CHUNK))
    ids = [int(r[0]) for r in await cursor.fetchall()]
    if not ids:
        return 0, cut, False
    row = await (await db.execute(_DELETE_EVENTS, (ids,))).fetchone()
    return int(row[0]) if row else 0, ids[-1], len(ids) == HISTORY_CHUNK
