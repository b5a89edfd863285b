"""What a full sync's page transactions cost SQLite alone: the store's own write path, run on one
thread with plain sqlite3 (no aiosqlite, no event loop, no HTTP), for the emulator's catalog.

    python -m benchmarks.sqlite_floor [--products 100000] [--page-size 100]

Each page is what `SqliteStore.commit_page` runs on aiosqlite's thread during a full scan (the
upsert, the change feed, the scan marks, the checkpoint, the run counters) in its own
transaction. Prints the CPU seconds (user, system) and, per statement kind, the thread's CPU
seconds: the floor under the SQLite thread's figure in `python -m benchmarks run`.
"""

from __future__ import annotations

import argparse
import resource
import sqlite3
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from syncd import codec
from syncd.clock import SystemClock
from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig
from syncd.sources.adobe_commerce import to_record
from syncd.store.base import ChangeOp, ProductRecord
from syncd.store.changes import append_changes, stamp
from syncd.store.rows import iso, set_progress, upsert
from syncd.store.schema import MIGRATIONS, statements
from syncd.store.sqlite import mark


class _Timed:
    """A sqlite3 connection that adds each statement's thread CPU time to `spent`."""

    def __init__(self, db: sqlite3.Connection, spent: defaultdict[str, float]) -> None:
        self._db = db
        self._spent = spent

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        start = time.thread_time()
        cursor = self._db.execute(sql, params)
        self._spent[_kind(sql)] += time.thread_time() - start
        return cursor

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> sqlite3.Cursor:
        start = time.thread_time()
        cursor = self._db.executemany(sql, rows)
        self._spent[_kind(sql)] += time.thread_time() - start
        return cursor


def _kind(sql: str) -> str:
    """A statement's name in the report: its first three words, through the table's name for an
    INSERT (`INSERT OR ROLLBACK INTO products`)."""
    words = sql.split()
    return " ".join(words[: words.index("INTO") + 2] if "INTO" in words[:4] else words[:3])


def records(products: int) -> list[ProductRecord]:
    """The emulator's catalog (the harness's seed) as the Adobe adapter maps it."""
    config = EmulatorConfig(adobe=AdobeConfig(products=products), seed=6)
    catalog = Emulator(config, SystemClock()).adobe.catalog
    return [to_record(codec.loads(catalog.render_bytes(slot))) for slot in catalog.alive]


def run(products: int, page_size: int) -> str:
    """Write `products` in pages of `page_size`, one transaction each; the report's text."""
    items = records(products)
    spent: defaultdict[str, float] = defaultdict(float)
    with tempfile.TemporaryDirectory() as scratch:
        db = sqlite3.connect(Path(scratch) / "floor.db", isolation_level=None)
        # As SqliteStore opens it.
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "wal_autocheckpoint=10000"):
            db.execute(f"PRAGMA {pragma}")
        for migration in MIGRATIONS:
            for statement in statements(migration):
                db.execute(statement)
        run_id = db.execute(
            "INSERT INTO sync_runs (source, kind, started_at, status) "
            "VALUES ('bench', 'full', 'now', 'running')"
        ).lastrowid
        assert run_id is not None  # an INSERT into a rowid table always sets it
        timed: Any = _Timed(db, spent)  # duck-typed for the store's helpers
        before = time.process_time()
        usage = _usage()
        for start in range(0, len(items), page_size):
            latest = {r.sku: r for r in items[start : start + page_size]}
            now = datetime.now(UTC)
            changed: list[tuple[ChangeOp, ProductRecord]] = []
            timed.execute("BEGIN IMMEDIATE")
            counts = upsert(timed, "bench", latest, iso(now), changed)
            append_changes(timed, "bench", changed, run_id, stamp(now), payloads=False)
            mark(timed, "bench", run_id, list(latest))
            set_progress(timed, "bench", now, f"checkpoint {start}", None)
            timed.execute(
                "UPDATE sync_runs SET pages = pages + 1, items_created = items_created + ? "
                "WHERE id = ?",
                (counts.created, run_id),
            )
            timed.execute("COMMIT")
        cpu = time.process_time() - before
        user, system = (after - was for after, was in zip(_usage(), usage, strict=True))
        db.close()
    lines = [
        f"{products} products in pages of {page_size}: {cpu:.2f} CPU s "
        f"(user {user:.2f}, system {system:.2f}); by statement:"
    ]
    lines += [
        f"  {seconds:6.3f} s  {what}"
        for what, seconds in sorted(spent.items(), key=lambda kv: -kv[1])
    ]
    return "\n".join(lines)


def _usage() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def main(argv: list[str] | None = None) -> None:
    """Parse, run, print."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sqlite_floor")
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=100)
    args = parser.parse_args(argv)
    print(run(args.products, args.page_size), flush=True)


if __name__ == "__main__":
    main()
