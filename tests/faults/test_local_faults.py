"""Local faults under the daemon: its database file deleted or replaced, its wall clock stepped back.

None of them can be healed by the daemon itself (a deleted or replaced file needs a restart), so
these scenarios end with a restart on the same settings instead of `FaultLab.finish`, and have no
row in docs/RELIABILITY.md yet.
"""

from __future__ import annotations

import os
import random
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from syncd.daemon import Runtime
from syncd.store import SqliteStore
from tests.faults.lab import FaultLab, LabClock


class SteppingLabClock(LabClock):
    """The lab's clock, whose wall time can also jump on its own (`date -s`, an NTP step)."""

    def step_wall(self, seconds: float) -> None:
        """Move the wall clock only; the monotonic clock does not notice."""
        self._now += timedelta(seconds=seconds)


@pytest.fixture
def lab_clock() -> LabClock:
    """This module's lab runs on a clock whose wall time can step."""
    return SteppingLabClock(datetime.now(UTC))


async def restart_and_sync(lab: FaultLab) -> None:
    """What an operator does next: restart syncd on the same settings; its run succeeds and the
    file now at the path holds the catalog."""
    assert lab.runtime is not None
    async with Runtime(lab.runtime.settings, clock=lab.clock, rng=random.Random(7)) as restarted:
        result = await restarted.sync("shop")
    assert result.ok, result.error
    check = lab.check()
    assert check.exact, check
    assert lab.integrity() == "ok"


async def test_a_deleted_database_stops_writes_and_readiness_until_a_restart(
    lab: FaultLab,
) -> None:
    """`rm syncd.db*` under the daemon: no run writes into the unlinked file any more (each is
    refused naming the path), `/readyz` says why, `store.file_changed` is logged once, the daemon
    stays alive; restarted, it builds a fresh database with a full sync."""
    await lab.start_emulator(products=120)
    runtime = await lab.open()
    daemon = lab.daemon
    assert daemon is not None
    assert (await daemon.monitor.readiness()).ok
    lab.change_catalog()
    for path in lab.db.parent.glob(f"{lab.db.name}*"):
        if path.is_file():
            path.unlink()
    lab.note("the database file (and its -wal, -shm) deleted under the daemon")
    seen = len(lab.logs)
    for _ in range(2):
        refused = await lab.run()
        assert refused.status == "crashed" and refused.result is None
    crashed = lab.crashes(seen)
    assert len(crashed) == 2
    expected = f"database {str(lab.db)!r} was deleted since syncd opened it"
    assert all(c["error"].startswith(expected) for c in crashed), crashed
    [changed] = lab.events("store.file_changed", seen)
    assert (changed["change"], changed["path"]) == ("was deleted", str(lab.db))
    ready = await daemon.monitor.readiness()
    assert not ready.ok and ready.detail["store"].startswith(f"error: {expected}")
    assert not lab.db.exists()  # nothing was written where the operator looks
    lab.assert_alive()
    assert isinstance(runtime.store, SqliteStore) and runtime.store.path == lab.db
    await restart_and_sync(lab)


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
    assert (await lab.sync()).ok  # the live file moves on past the backup
    assert lab.stored() != backed_up
    os.replace(backup, lab.db)
    lab.note("last night's backup moved over the database file (mv)")
    seen = len(lab.logs)
    refused = await lab.run()
    assert refused.status == "crashed" and refused.error is not None
    assert "was replaced by another file" in refused.error
    ready = await daemon.monitor.readiness()
    assert not ready.ok and "was replaced" in ready.detail["store"]
    [changed] = lab.events("store.file_changed", seen)
    assert changed["change"].startswith("was replaced by another file")
    assert lab.stored() == backed_up and lab.integrity() == "ok"  # the restored file as restored
    lab.assert_alive()
    await restart_and_sync(lab)


async def test_a_wall_clock_stepped_back_keeps_the_schedule(lab: FaultLab) -> None:
    """The wall clock steps back 10 minutes under the daemon: at its next wake-up (here: the
    liveness probe) every next run moves back by the step, logged once; the daemon stays live
    (nothing overdue), and the next run succeeds with the data exact."""
    emu = await lab.start_emulator(products=120)
    await lab.open()
    daemon = lab.daemon
    clock = lab.clock
    assert daemon is not None and isinstance(clock, SteppingLabClock)
    planned = daemon.next_run("shop")
    assert planned is not None
    lab.change_catalog()
    clock.step_wall(-600)
    lab.note("the wall clock stepped back 10 minutes")
    seen = len(lab.logs)
    probe = daemon.monitor.liveness()
    assert probe.ok and probe.detail["overdue_s"] == {}, probe
    assert daemon.next_run("shop") == planned - timedelta(minutes=10)
    [stepped] = lab.events("scheduler.clock_stepped", seen)
    assert (stepped["step_s"], stepped["jobs_moved"]) == (-600.0, ["shop"])
    lab.assert_alive()
    result = await lab.sync()
    assert result.ok, result.error
    check = lab.verify("shop", emu)
    assert check.exact, check
    assert not lab.events("scheduler.clock_stepped", seen)[1:]  # one step, handled once
