"""The store's file under local faults: deleted or replaced under the daemon, and two processes
creating the schema of a fresh file at once."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from syncd.errors import StoreError
from syncd.store import RunTotals, SqliteStore
from syncd.store.schema import SCHEMA_VERSION

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def test_a_deleted_file_fails_every_write_naming_it_and_is_logged_once(
    tmp_path: Path,
) -> None:
    """SQLite would write on into the unlinked file: the store refuses instead, names the path
    and what happened, and logs `store.file_changed` once however often it refuses."""
    path = tmp_path / "syncd.db"
    async with SqliteStore(path) as store:
        await store.start_run("shop", "full", T0)
        await store.check_file()  # the file it opened: nothing to say
        path.unlink()
        with capture_logs() as logs:
            with pytest.raises(StoreError) as refused:
                await store.start_run("shop", "full", T0)
            with pytest.raises(StoreError):
                await store.check_file()
            with pytest.raises(StoreError):
                await store.set_needs_reauth("shop", None, T0)
        message = str(refused.value)
        assert message.startswith(f"database {str(path)!r} was deleted since syncd opened it")
        assert "restart syncd" in message
        [event] = [e for e in logs if e["event"] == "store.file_changed"]
        assert (event["log_level"], event["path"], event["change"]) == (
            "error",
            str(path),
            "was deleted",
        )
    assert not path.exists()  # nothing recreated it behind the operator's back


async def test_a_replaced_file_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    """A restore moved over the open database (new inode): the store refuses to write, says it
    was replaced, and the new file is untouched (its own rows only)."""
    path = tmp_path / "syncd.db"
    other = tmp_path / "restored.db"
    async with SqliteStore(other) as restored:
        run_id = await restored.start_run("restored", "full", T0)
        await restored.finish_run(run_id, "succeeded", RunTotals(pages=1), T0)
    async with SqliteStore(path) as store:
        await store.start_run("shop", "full", T0)
        os.replace(other, path)
        with pytest.raises(StoreError, match="was replaced by another file") as refused:
            await store.start_run("shop", "full", T0)
        assert "inode" in str(refused.value)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT source, status FROM sync_runs").fetchall() == [
            ("restored", "succeeded")
        ]


async def test_a_file_replaced_while_idle_is_not_overwritten_by_the_old_wal(
    tmp_path: Path,
) -> None:
    """Replaced while nothing was being written, and syncd stops: SQLite keeps the `-wal` of an
    unlinked database, and the next opener would replay the old pages onto the new file; the
    store empties it first."""
    path = tmp_path / "syncd.db"
    other = tmp_path / "restored.db"
    async with SqliteStore(other) as restored:
        await restored.start_run("restored", "full", T0)
    async with SqliteStore(path) as store:
        for n in range(20):
            await store.start_run(f"old{n}", "full", T0)
        os.replace(other, path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT source FROM sync_runs").fetchall() == [("restored",)]
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


async def test_a_file_renamed_back_is_accepted_again(tmp_path: Path) -> None:
    """The identity is the inode, not the name: moved away and back, it is the same file."""
    path = tmp_path / "syncd.db"
    async with SqliteStore(path) as store:
        path.rename(tmp_path / "away.db")
        with pytest.raises(StoreError, match="was deleted"):
            await store.check_file()
        (tmp_path / "away.db").rename(path)
        await store.check_file()
        await store.start_run("shop", "full", T0)


async def test_concurrent_first_starts_create_the_schema_once(tmp_path: Path) -> None:
    """Four stores opening one fresh file at once (each on its own connection and thread): one
    creates the schema, the others find it there; none fails with `already exists`."""
    path = tmp_path / "fresh.db"
    stores = [SqliteStore(path, busy_timeout=30.0) for _ in range(4)]
    opened = await asyncio.gather(*(s.__aenter__() for s in stores), return_exceptions=True)
    try:
        assert [o for o in opened if isinstance(o, BaseException)] == []
        for store in stores:
            await store.start_run("shop", "full", T0)
    finally:
        for store in stores:
            await store.__aexit__(None, None, None)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("SELECT count(*) FROM sync_runs").fetchone()[0] == 4


OPEN_ONCE = """
import asyncio, sys
from syncd.store import SqliteStore

async def main() -> None:
    async with SqliteStore(sys.argv[1], busy_timeout=30.0):
        pass

asyncio.run(main())
"""


def test_two_processes_starting_on_a_fresh_file_both_open_it(tmp_path: Path) -> None:
    """The report's case: two daemons started on a fresh database; both open it."""
    path = tmp_path / "fresh.db"
    procs = [
        subprocess.Popen(  # noqa: S603 - this interpreter, a fixed script
            [sys.executable, "-c", OPEN_ONCE, str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outcomes = [(p.wait(timeout=60), p.communicate()[1]) for p in procs]
    assert outcomes == [(0, ""), (0, "")]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
