"""Starting and stopping around the daemon: two daemons on one fresh database, and SIGTERM to a
manual `syncd sync` while the daemon runs beside it. Each row is recorded before it is asserted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import random
import signal
import sqlite3
from collections import deque
from typing import Any

from syncd.commands.running import sync_now
from syncd.daemon import Daemon
from syncd.runtime import Runtime
from syncd.store.schema import SCHEMA_VERSION
from tests.faults.lab import FaultLab, RunRecord
from tests.support import until


async def test_two_daemons_started_on_a_fresh_database_both_run(lab: FaultLab) -> None:
    """A second daemon opens the same fresh file at the same moment as the lab's: neither dies
    on `already exists`, the schema is created once, both sync the catalog."""
    await lab.start_emulator(products=150)
    settings = lab.settings()
    twin_stack = contextlib.AsyncExitStack()
    lab.stack.push_async_callback(twin_stack.aclose)

    async def twin() -> Runtime:
        return await twin_stack.enter_async_context(
            Runtime(settings, clock=lab.clock, rng=random.Random(9))
        )

    lab.note("a second daemon started on the same fresh database at the same moment")
    _, runtime = await asyncio.gather(lab.open(settings=settings), twin())
    daemon = await twin_stack.enter_async_context(Daemon(runtime, handle_signals=False))
    await until(lambda: len(daemon.results) >= 1)
    lab.runs.extend(
        RunRecord(f"{r.source} (second daemon)", r.status, r.error, r) for r in daemon.results
    )
    twin_run = daemon.results[0]
    lab.verify()
    await twin_stack.aclose()
    with sqlite3.connect(lab.db) as conn:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    errors = [e for e in lab.logs if "already exists" in repr(e)]
    lab.assert_recorded(await lab.conclude("two-daemons-fresh-database"))
    assert twin_run.ok, twin_run.error
    assert version == SCHEMA_VERSION and errors == []


class Tripwire(deque[Any]):
    """The emulator's request log, which sends this process SIGTERM when the `at`-th request is
    logged (while a handler is installed: never the default action, which would end pytest)."""

    def __init__(self, log: deque[Any], at: int) -> None:
        super().__init__(log, maxlen=log.maxlen)
        self.at = len(log) + at
        self.fired = False

    def append(self, item: Any) -> None:
        super().append(item)
        if len(self) >= self.at and not self.fired:
            self.fired = signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)
            if self.fired:
                os.kill(os.getpid(), signal.SIGTERM)


async def test_sigterm_to_a_manual_sync_records_the_run_cancelled(lab: FaultLab) -> None:
    """`syncd sync shop --full` beside the daemon gets SIGTERM at its 12th request: it exits 143
    with one final line, its run is `cancelled` (not left `running`) with a reason that names no
    daemon, the pages it committed are whole; the daemon's next run succeeds."""
    emu = await lab.start_emulator(products=300)
    runtime = await lab.open()
    good = lab.stored()
    lab.change_catalog()
    lab.note("SIGTERM to `syncd sync shop --full` at its 12th request")
    wire = Tripwire(emu.adobe.stats.log, at=12)
    emu.adobe.stats.log = wire
    stderr = io.StringIO()
    args = argparse.Namespace(source="shop", full=True)
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        code = await asyncio.create_task(sync_now(args, runtime.settings))
    with sqlite3.connect(lab.db) as conn:
        status, error, seen, pages = conn.execute(
            "SELECT status, error, items_seen, pages FROM sync_runs ORDER BY id DESC LIMIT 1"
        ).fetchone()
    lab.runs.append(RunRecord("shop", status, error, None))
    lab.unharmed(good)
    lab.assert_recorded(await lab.conclude("sigterm-manual-sync"))
    assert wire.fired
    assert code == 143, stderr.getvalue()[-2000:]
    assert stderr.getvalue().strip().splitlines()[-1] == (
        "syncd: terminated (SIGTERM); the run is recorded as cancelled"
    )
    assert (status, error) == ("cancelled", "syncd sync was stopped by SIGTERM during the run")
    assert "daemon" not in error
    assert seen == pages * 10 and 0 < pages < 30  # whole pages only, stopped mid-run
