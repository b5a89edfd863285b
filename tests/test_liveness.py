"""Run liveness is a kernel lock, not a pid guess: abandoned runs are closed, live ones refuse."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from syncd.daemon import Daemon
from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig
from syncd.errors import SourceBusyError
from syncd.runtime import ABANDONED, Runtime, process_owner
from syncd.store import SourceLocks, SqliteStore
from tests.clocks import FakeClock
from tests.support import adobe_source, query, settings_for, until

pytestmark = pytest.mark.timeout(30)
T0 = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
OTHER = "other-container:1:20260131T110000Z"

# Another process holding a source's run lock, as a daemon does for the length of a run.
HOLDER = """
import asyncio, sys
from pathlib import Path
from syncd.store import SourceLocks

async def main() -> None:
    async with SourceLocks.beside(Path(sys.argv[1])).hold(sys.argv[2], sys.argv[3]):
        print("held", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""

Hold = Callable[[str, str], Awaitable[asyncio.subprocess.Process]]


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    """A tiny catalog on loopback."""
    async with Emulator(EmulatorConfig(adobe=AdobeConfig(products=5), seed=3)) as emulator:
        yield emulator


@pytest.fixture
async def db(tmp_path: Path) -> Path:
    """A migrated, empty database."""
    path = tmp_path / "l.db"
    async with SqliteStore(path):
        pass
    return path


@pytest.fixture
async def holder(db: Path) -> AsyncIterator[Hold]:
    """Starts a process that holds a source's lock until it is killed."""
    procs: list[asyncio.subprocess.Process] = []

    async def hold(source: str, owner: str) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", HOLDER, str(db), source, owner,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        procs.append(proc)
        assert proc.stdout is not None
        async with asyncio.timeout(10):
            assert await proc.stdout.readline() == b"held\n"
        return proc

    yield hold
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def open_run(db: Path, owner: str, source: str = "shop") -> int:
    """A row left `running` by `owner`."""
    async with SqliteStore(db) as store:
        return await store.start_run(source, "full", T0, owner)


def statuses(db: Path) -> list[tuple[Any, ...]]:
    return query(db, "SELECT id, status, error FROM sync_runs ORDER BY id")


async def test_a_second_holder_is_refused_even_in_the_same_process(tmp_path: Path) -> None:
    """flock is per open file: a second hold in this very process is busy, naming the holder."""
    locks = SourceLocks(tmp_path / "locks")
    async with locks.hold("shop", "me:1:x"):
        with pytest.raises(SourceBusyError, match=r"source 'shop' is being synced by me:1:x;"):
            async with locks.hold("shop", "me:2:y"):
                pass
        async with locks.try_hold("shop", "me:2:y") as free:
            assert free is False
        async with locks.try_hold("other", "me:2:y") as free:
            assert free is True
    async with locks.try_hold("shop", "me:2:y") as free:
        assert free is True
    assert stat.S_IMODE((tmp_path / "locks").stat().st_mode) == 0o700
    assert stat.S_IMODE(locks.path("shop").stat().st_mode) == 0o600


def test_a_lock_file_never_leaves_its_directory(tmp_path: Path) -> None:
    """A name that is not a plain source name is refused before it reaches the filesystem."""
    locks = SourceLocks.beside(tmp_path / "s.db")
    assert locks.path("main-store_2") == tmp_path / "s.db-locks" / "main-store_2.lock"
    for bad in ("../x", "a/b", "", "Shop"):
        with pytest.raises(ValueError, match="cannot name a lock file"):
            locks.path(bad)


async def test_runs_left_by_this_process_or_another_host_are_failed_at_start(
    db: Path, emu: Emulator
) -> None:
    """Same host:pid (a container's PID 1 after a restart), this runtime's own owner string, and a
    dead container's hostname: no lock is held, so all are failed and the source runs again."""
    legacy = f"{socket.gethostname()}:{os.getpid()}"
    clock = FakeClock()  # the runtime's start, so its own owner string is known beforehand
    await open_run(db, legacy)
    own = process_owner(clock.now())
    await open_run(db, own)
    await open_run(db, OTHER, source="gone-source")
    with capture_logs() as logs:
        async with Runtime(settings_for(db, adobe_source(emu)), clock) as runtime:
            assert runtime.owner == own
            result = await runtime.sync("shop")
    assert result.ok
    assert statuses(db) == [
        (1, "failed", ABANDONED), (2, "failed", ABANDONED), (3, "failed", ABANDONED),
        (4, "succeeded", None),
    ]  # fmt: skip
    closed = [(e["source"], e["count"]) for e in logs if e["event"] == "sync.abandoned_runs"]
    assert closed == [("gone-source", 1), ("shop", 2)]


async def test_a_run_whose_lock_is_held_elsewhere_is_busy_until_its_process_dies(
    db: Path, emu: Emulator, holder: Hold
) -> None:
    """A live holder keeps its row `running` and refuses the source; SIGKILL frees it at once."""
    proc = await holder("shop", OTHER)
    await open_run(db, OTHER)
    async with Runtime(settings_for(db, adobe_source(emu))) as runtime:
        assert statuses(db) == [(1, "running", None)]
        with pytest.raises(SourceBusyError, match=f"being synced by {OTHER}; wait"):
            await runtime.sync("shop")
        assert statuses(db) == [(1, "running", None)]
        proc.kill()
        await proc.wait()
        result = await runtime.sync("shop")
    assert result.ok
    assert statuses(db) == [(1, "failed", ABANDONED), (2, "succeeded", None)]


async def test_the_daemon_skips_a_source_another_process_is_syncing(
    db: Path, emu: Emulator, holder: Hold
) -> None:
    """The start-up run of a busy source is one `sync.skipped reason=busy` line, no run row."""
    await holder("shop", OTHER)
    settings = settings_for(db, adobe_source(emu, schedule="1h"))
    with capture_logs() as logs:
        async with Runtime(settings) as runtime, Daemon(runtime, handle_signals=False):
            await until(lambda: any(e["event"] == "sync.skipped" for e in logs))
    (skipped,) = [e for e in logs if e["event"] == "sync.skipped"]
    assert (skipped["reason"], skipped["log_level"]) == ("busy", "warning")
    assert OTHER in skipped["detail"]
    assert statuses(db) == []
