"""Retention of run history and token events (`[store] history_retention`): which rows may go,
in SQL both backends run, and the SQLite side of pruning them in bounded chunks.

What stays whatever its age, because something reads it:

- a run still `running` (the engine writes to it; leases and start-up close abandoned ones);
- the newest RUNS_KEPT runs of each source (`syncd status` and the monitor read the newest, the
  engine's resume guard the last `RESUME_ATTEMPTS`, sync.py);
- the newest succeeded run of each source (staleness, `/readyz`, the last-success metric);
- the newest token event of each (source, event) (`syncd status` and `syncd check` show the last
  grant); the events removed are added to `token_event_tallies`, so `token_event_counts` (the
  `syncd_token_events` counter) never goes down.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable
from typing import Literal

HISTORY_CHUNK = 2_000
"""Rows deleted per transaction: a long delete must not stall the page writes (a chunk of
sync_runs takes ~50-100 ms on SQLite at 1 M rows, the write lock held all along)."""

RUNS_KEPT = 3
"""The newest runs of each source that pruning never removes (at least sync.RESUME_ATTEMPTS)."""

HistoryTable = Literal["sync_runs", "token_events"]

SqliteChunk = Callable[[int, int, str, sqlite3.Connection], tuple[int, int, bool]]
"""One chunk of a prune: (after, cut, before, connection) -> (deleted, next after, more); the
bounds first, so that `partial` makes it the function of a connection `_write` runs."""

_TIME = {"sync_runs": "started_at", "token_events": "at"}

# The oldest row at or after an id, with its time: the probe of the cut's binary search.
FIRST_AT = {
    table: f"SELECT {column} FROM {table} WHERE id >= ? ORDER BY id LIMIT 1"
    for table, column in _TIME.items()
}

MAX_ID = {table: f"SELECT coalesce(max(id), 0) FROM {table}" for table in _TIME}

# Runs past retention, oldest first, after a cursor and up to the cut: ? = after, cut, before,
# RUNS_KEPT - 1, limit. Each subquery walks the (source, id) index forward from the row and stops
# at its first match (ORDER BY ... LIMIT: PostgreSQL would read every later run of the source
# into a bitmap for an EXISTS). `|| ''` keeps SQLite off the status index, which it prefers
# without statistics and which would scan every later success of every source.
EXPIRED_RUNS = """
SELECT r.id FROM sync_runs r
WHERE r.id > ? AND r.id <= ? AND r.status <> 'running' AND r.finished_at < ?
  AND (SELECT n.id FROM sync_runs n WHERE n.source = r.source AND n.id > r.id
       ORDER BY n.id LIMIT 1 OFFSET ?) IS NOT NULL
  AND (r.status <> 'succeeded' OR (SELECT n.id FROM sync_runs n WHERE n.source = r.source
       AND n.id > r.id AND n.status || '' = 'succeeded' ORDER BY n.id LIMIT 1) IS NOT NULL)
ORDER BY r.id LIMIT ?
"""

# Token events past retention, oldest first: ? = after, cut, before, limit.
EXPIRED_EVENTS = """
SELECT t.id, t.source, t.event FROM token_events t
WHERE t.id > ? AND t.id <= ? AND t.at < ?
  AND (SELECT n.id FROM token_events n WHERE n.source = t.source AND n.event = t.event
       AND n.id > t.id ORDER BY n.id LIMIT 1) IS NOT NULL
ORDER BY t.id LIMIT ?
"""

TALLY = (
    "INSERT INTO token_event_tallies (source, event, pruned) VALUES (?, ?, ?) "
    "ON CONFLICT (source, event) DO UPDATE SET pruned = token_event_tallies.pruned + "
    "excluded.pruned"
)


def pg(query: str) -> str:
    """`query` with psycopg's placeholders: one text of each rule for both backends."""
    return query.replace("?", "%s")


def history_cut(db: sqlite3.Connection, table: HistoryTable, before: str) -> int:
    """The highest id of `table` whose row is older than `before` (0: none). A binary search on
    the primary key: times grow with ids, and there is no index on them to read instead."""
    lo, hi = 0, int(db.execute(MAX_ID[table]).fetchone()[0])  # invariant: id lo is old
    while lo < hi:
        mid = (lo + hi + 1) // 2
        row = db.execute(FIRST_AT[table], (mid,)).fetchone()
        if row is not None and row[0] < before:
            lo = mid
        else:
            hi = mid - 1
    return lo


def prune_runs_chunk(
    after: int, cut: int, before: str, db: sqlite3.Connection
) -> tuple[int, int, bool]:
    """Delete up to HISTORY_CHUNK expired runs with ids in (`after`, `cut`], in the caller's
    transaction; return (how many, the id to go on after, whether more may remain)."""
    rows = db.execute(EXPIRED_RUNS, (after, cut, before, RUNS_KEPT - 1, HISTORY_CHUNK)).fetchall()
    db.executemany("DELETE FROM sync_runs WHERE id = ?", [(r[0],) for r in rows])
    return len(rows), int(rows[-1][0]) if rows else cut, len(rows) == HISTORY_CHUNK


def prune_token_events_chunk(
    after: int, cut: int, before: str, db: sqlite3.Connection
) -> tuple[int, int, bool]:
    """Delete up to HISTORY_CHUNK expired token events with ids in (`after`, `cut`] and add them
    to the tallies, in the caller's transaction; return as `prune_runs_chunk` does."""
    rows = db.execute(EXPIRED_EVENTS, (after, cut, before, HISTORY_CHUNK)).fetchall()
    tallies = Counter((str(r[1]), str(r[2])) for r in rows)
    db.executemany(TALLY, [(source, event, n) for (source, event), n in tallies.items()])
    db.executemany("DELETE FROM token_events WHERE id = ?", [(r[0],) for r in rows])
    return len(rows), int(rows[-1][0]) if rows else cut, len(rows) == HISTORY_CHUNK
