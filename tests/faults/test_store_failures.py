"""The database refusing writes: a disk that fills up mid-run, a file that turns read-only.

Both are set with pragmas on the store's own connection (they hold per connection), which is how
SQLite itself reports them: SQLITE_FULL "database or disk is full" and SQLITE_READONLY.
"""

from __future__ import annotations

import asyncio

from syncd.progress import FullScanCheckpoint
from syncd.store import SqliteStore
from tests.faults.lab import FaultLab

PRODUCTS, ADDED = 300, 200


async def pragma(store: SqliteStore, statement: str) -> int:
    """Run a pragma on the connection the store writes with (private by design, reached on purpose)."""
    async with store._conn.execute(statement) as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def test_a_full_disk_mid_run_fails_cleanly_and_the_next_run_resumes(lab: FaultLab) -> None:
    """200 new products, and room for ~25 more database pages: the run fails naming the write,
    what was stored before is intact, every row is whole, SQLite finds no corruption, and once
    there is room the next full run resumes to completion."""
    emu = await lab.start_emulator(products=PRODUCTS)
    runtime = await lab.open()
    store = runtime.store
    before = lab.stored()
    lab.change_catalog(add=ADDED)
    used = await pragma(store, "PRAGMA page_count")
    room = 25
    await pragma(store, f"PRAGMA max_page_count = {used + room}")
    lab.note(f"the database may grow by {room} pages only (SQLITE_FULL)")
    failed = await lab.sync(kind="full")
    lab.expect(failed.status == "failed", 'failed.status == "failed"')
    # The run's page workers stopped with it: none is left fetching in the background.
    lab.expect(
        not [t for t in asyncio.all_tasks() if t.get_name() == "shop-page-worker"],
        'not [t for t in asyncio.all_tasks() if t.get_name() == "shop-page-worker"]',
    )
    assert failed.error is not None and "\n" not in failed.error
    lab.expect(
        failed.error.startswith("cannot store 10 products of 'shop': "),
        "failed.error.startswith(\"cannot store 10 products of 'shop': \")",
    )
    lab.expect(
        failed.error.endswith("database or disk is full"),
        'failed.error.endswith("database or disk is full")',
    )
    lab.expect(lab.integrity() == "ok", 'lab.integrity() == "ok"')
    check = lab.unharmed(before)  # whole rows: as before, or as the catalog has them now
    lab.expect(check.exact, check)
    stored, catalog = lab.stored(), emu.adobe.catalog.snapshot()
    added = stored.keys() - before.keys()
    lab.expect(0 < len(added) < ADDED, "0 < len(added) < ADDED")
    state = await store.source_state("shop")
    checkpoint = FullScanCheckpoint.decode(state.checkpoint)
    assert checkpoint is not None and checkpoint.done
    committed = sum(min(10, len(catalog) - 10 * (page - 1)) for page in checkpoint.done)

    await pragma(store, "PRAGMA max_page_count = 1073741823")  # space freed
    resumed = await lab.sync(kind="full")
    lab.expect(resumed.ok, resumed.error)
    lab.expect(
        resumed.totals.items_seen == len(catalog) - committed,
        "resumed.totals.items_seen == len(catalog) - committed",
    )
    lab.expect(lab.integrity() == "ok", 'lab.integrity() == "ok"')
    check = lab.verify()
    lab.expect(check.exact, check)
    await lab.finish("sqlite-disk-full")


async def test_a_read_only_database_fails_the_run_in_one_line_and_the_daemon_carries_on(
    lab: FaultLab,
) -> None:
    """Writes refused: the daemon logs one `sync.crashed` line (no traceback), the data stays as
    it was, the schedule is kept; writable again, the next run succeeds."""
    await lab.start_emulator(products=200)
    runtime = await lab.open()
    good = lab.stored()
    lab.change_catalog(every=10)
    await pragma(runtime.store, "PRAGMA query_only = ON")
    lab.note("the database refuses every write (SQLITE_READONLY)")
    seen = len(lab.logs)
    refused = await lab.run()
    lab.expect(
        refused.status == "crashed" and refused.result is None,
        'refused.status == "crashed" and refused.result is None',
    )
    crashed = lab.crashes(seen)
    lab.expect(len(crashed) == 1, "len(crashed) == 1")
    lab.expect(
        crashed[0]["error"].startswith("cannot start a run of 'shop': "),
        'crashed[0]["error"].startswith("cannot start a run of \'shop\': ")',
    )
    lab.expect(
        crashed[0]["error"].endswith("attempt to write a readonly database"),
        'crashed[0]["error"].endswith("attempt to write a readonly database")',
    )
    lab.expect(
        crashed[0]["log_level"] == "error" and "exc_info" not in crashed[0],
        'crashed[0]["log_level"] == "error" and "exc_info" not in crashed[0]',
    )
    lab.expect(
        lab.stored() == good and lab.integrity() == "ok",
        'lab.stored() == good and lab.integrity() == "ok"',
    )
    check = lab.unharmed(good)
    lab.expect(check.exact, check)
    lab.expect(not lab.liveness_problems(), "the daemon alive and scheduling mid-scenario")

    await pragma(runtime.store, "PRAGMA query_only = OFF")
    recovered = await lab.sync()
    lab.expect(recovered.ok, recovered.error)
    lab.expect(len(lab.crashes(seen)) == 1, "len(lab.crashes(seen)) == 1")
    await lab.finish("sqlite-read-only")
