"""The database refusing writes: a disk that fills up mid-run, a file that turns read-only.

Both are set with pragmas on the store's own connection (they hold per connection), which is how
SQLite itself reports them: SQLITE_FULL "database or disk is full" and SQLITE_READONLY.
"""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from syncd.progress import FullScanCheckpoint
from syncd.store import SqliteStore
from tests.faults.lab import FaultLab


async def pragma(store: SqliteStore, statement: str) -> int:
    """Run a pragma on the connection the store writes with (private by design, reached on purpose)."""
    async with store._conn.execute(statement) as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def test_a_full_disk_mid_run_fails_cleanly_and_the_next_run_resumes(lab: FaultLab) -> None:
    """The file cannot grow past ~25 more pages: the run fails naming the write, every stored
    product is whole, SQLite finds no corruption, and the next run resumes to completion."""
    emu = await lab.start_emulator(products=300)
    runtime = await lab.open()
    store = runtime.store
    used = await pragma(store, "PRAGMA page_count")
    await pragma(store, f"PRAGMA max_page_count = {used + 25}")
    failed = await lab.sync()
    assert failed.status == "failed"
    # The run's page workers stopped with it: none is left fetching in the background.
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "shop-page-worker"]
    assert failed.error is not None and "\n" not in failed.error
    assert failed.error.startswith("cannot store 10 products of 'shop': ")
    assert failed.error.endswith("database or disk is full")
    assert lab.integrity() == "ok"
    stored = lab.stored()
    catalog = emu.adobe.catalog.snapshot()
    assert 0 < len(stored) < len(catalog)
    assert all(catalog[sku] == item for sku, item in stored.items())  # whole pages, no torn rows
    state = await store.source_state("shop")
    checkpoint = FullScanCheckpoint.decode(state.checkpoint)
    assert checkpoint is not None and len(checkpoint.done) * 10 == len(stored)

    await pragma(store, "PRAGMA max_page_count = 1073741823")  # space freed
    resumed = await lab.sync()
    assert resumed.ok, resumed.error
    assert resumed.totals.items_seen == len(catalog) - len(stored)  # committed pages skipped
    assert lab.integrity() == "ok"
    check = lab.check()
    assert check.exact, check
    lab.record("sqlite-disk-full", "failed (disk full) → resumed, succeeded", check)


async def test_a_read_only_database_fails_the_run_in_one_line_and_the_daemon_carries_on(
    lab: FaultLab,
) -> None:
    """Writes refused while the daemon runs: one `sync.crashed` line (no traceback), the data as
    it was, the schedule kept; writable again, the next scheduled run succeeds."""
    emu = await lab.start_emulator(products=200)
    runtime = await lab.open()
    assert (await lab.sync()).ok
    good = lab.stored()
    for sku in list(emu.adobe.catalog.skus())[::10]:
        emu.adobe.catalog.update(sku, price=3.0)
    await pragma(runtime.store, "PRAGMA query_only = ON")
    with capture_logs() as logs:
        daemon = await lab.daemon()
        await lab.until(lambda: any(e["event"] == "sync.crashed" for e in logs))
        crashed = next(e for e in logs if e["event"] == "sync.crashed")
        assert crashed["error"].startswith("cannot start a run of 'shop': ")
        assert crashed["error"].endswith("attempt to write a readonly database")
        assert crashed["log_level"] == "error" and "exc_info" not in crashed
        assert lab.stored() == good and lab.integrity() == "ok"
        assert daemon.next_run("shop") is not None

        await pragma(runtime.store, "PRAGMA query_only = OFF")
        await lab.until(lambda: len(daemon.results) >= 1)
    assert daemon.results[0].ok, daemon.results[0].error
    check = lab.check()
    assert check.exact, check
    crashes = sum(e["event"] == "sync.crashed" for e in logs)
    assert crashes == 1
    lab.record(
        "sqlite-read-only", "refused (read-only) → next scheduled run succeeded", check,
        crashed=crashes,
    )  # fmt: skip
