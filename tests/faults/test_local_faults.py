"""Local faults under the daemon: its database file deleted or replaced, its wall clock stepped back.

A deleted or replaced file cannot be healed by the daemon itself: those scenarios restart it on
the same settings (`FaultLab.restart`) before the lab concludes. Every scenario records its row
(`FaultLab.conclude`) before it asserts.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import timedelta

from tests.faults.lab import FaultLab


async def test_a_deleted_database_stops_writes_and_readiness_until_a_restart(
    lab: FaultLab,
) -> None:
    """`rm syncd.db*` under the daemon: no run writes into the unlinked file any more (each is
    refused naming the path), `/readyz` says why, `store.file_changed` is logged once, the daemon
    stays alive; restarted, it builds a fresh database with a full sync."""
    await lab.start_emulator(products=120)
    await lab.open()
    daemon = lab.daemon
    assert daemon is not None
    ready_before = (await daemon.monitor.readiness()).ok
    lab.change_catalog()
    for path in lab.db.parent.glob(f"{lab.db.name}*"):
        if path.is_file():
            path.unlink()
    lab.note("the database file (and its -wal, -shm) deleted under the daemon")
    seen = len(lab.logs)
    refused = [await lab.run() for _ in range(2)]
    crashed = lab.crashes(seen)
    changed = lab.events("store.file_changed", seen)
    ready = await daemon.monitor.readiness()
    written = lab.db.exists()
    alive = lab.liveness_problems()
    restarted = await lab.restart("the database was deleted")
    result = await lab.conclude("database-deleted")
    lab.assert_recorded(result)
    assert ready_before and alive == []
    assert [r.status for r in refused] == ["crashed"] * 2
    assert all(r.result is None for r in refused)
    expected = f"database {str(lab.db)!r} was deleted since syncd opened it"
    assert len(crashed) == 2 and all(c["error"].startswith(expected) for c in crashed), crashed
    assert [(c["change"], c["path"]) for c in changed] == [("was deleted", str(lab.db))]
    assert not ready.ok and ready.detail["store"].startswith(f"error: {expected}")
    assert not written  # nothing was written where the operator looks
    assert [r.status for r in restarted] == ["succeeded"]
    assert lab.integrity() == "ok"


async def test_a_replaced_database_is_left_as_restored_and_noticed(lab: FaultLab) -> None:
    """Last night's backup moved over the live file: the daemon refuses to write to the file it
    had open (the restored one is not touched either, the old WAL is not replayed onto it), says
    it was replaced, and `/readyz` is 503; restarted, it syncs the restored file up to date."""
    await lab.start_emulator(products=120)
    await lab.open()
    daemon = lab.daemon
    assert daemon is not None
    backup = lab.tmp_path / "backup.db"
    with sqlite3.connect(lab.db) as live, sqlite3.connect(backup) as copy:
        live.backup(copy)
    with sqlite3.connect(backup) as copy:
        copy.execute("PRAGMA journal_mode=DELETE")  # a backup is one self-contained file
    backed_up = lab.stored()
    lab.change_catalog(every=10, add=5)
    moved_on = await lab.sync()  # the live file moves on past the backup
    lab.verify()
    os.replace(backup, lab.db)
    lab.note("last night's backup moved over the database file (mv)")
    seen = len(lab.logs)
    refused = await lab.run()
    ready = await daemon.monitor.readiness()
    changed = lab.events("store.file_changed", seen)
    as_restored = lab.stored() == backed_up
    lab.unharmed(backed_up)
    integrity = lab.integrity()
    alive = lab.liveness_problems()
    restarted = await lab.restart("the database was replaced")
    result = await lab.conclude("database-replaced")
    lab.assert_recorded(result)
    assert moved_on.ok and backed_up != lab.stored()
    assert refused.status == "crashed" and refused.error is not None
    assert "was replaced by another file" in refused.error
    assert not ready.ok and "was replaced" in ready.detail["store"]
    assert len(changed) == 1 and changed[0]["change"].startswith("was replaced by another file")
    assert as_restored and integrity == "ok" and alive == []
    assert [r.status for r in restarted] == ["succeeded"]
    assert lab.integrity() == "ok"


async def test_a_wall_clock_stepped_back_keeps_the_schedule(lab: FaultLab) -> None:
    """The wall clock steps back 10 minutes under the daemon: at its next wake-up (here: the
    liveness probe) every next run moves back by the step, logged once; the daemon stays live
    (nothing overdue), and the next run succeeds with the data exact."""
    await lab.start_emulator(products=120)
    await lab.open()
    daemon = lab.daemon
    clock = lab.clock
    assert daemon is not None
    planned = daemon.next_run("shop")
    lab.change_catalog()
    clock.step_wall(-600)
    lab.note("the wall clock stepped back 10 minutes")
    seen = len(lab.logs)
    probe = daemon.monitor.liveness()
    moved = daemon.next_run("shop")
    stepped = lab.events("scheduler.clock_stepped", seen)
    result = await lab.conclude("clock-stepped-back")
    lab.assert_recorded(result)
    assert probe.ok and probe.detail["overdue_s"] == {}, probe
    assert planned is not None and moved == planned - timedelta(minutes=10)
    assert [(e["step_s"], e["jobs_moved"]) for e in stepped] == [(-600.0, ["shop"])]
    assert len(lab.events("scheduler.clock_stepped", seen)) == 1  # one step, handled once
