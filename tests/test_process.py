"""Real processes and real signals: SIGTERM drains `syncd run`; SIGTERM or SIGINT ends `syncd sync`
as Ctrl-C does, with the run recorded; SIGKILL of `syncd sync` resumes (on both platforms: the
resume is the engine's, the request shapes are each adapter's)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from syncd.emulator import Emulator
from syncd.runtime import Runtime
from tests.platforms import ADOBE, PLATFORMS, Platform
from tests.support import query, settings_for, stored_products, until

pytestmark = pytest.mark.timeout(60)


@asynccontextmanager
async def slow_emulator(platform: Platform) -> AsyncIterator[Emulator]:
    """The platform's emulator on loopback with 2,000 products served slowly (30 ms a request),
    so that a run lasts long enough to interrupt (about 3 s: at 10 ms a loaded machine let a
    run finish before the test's signal reached it)."""
    async with Emulator(platform.emulator(2000, seed=5, latency=0.03)) as emu:
        yield emu


def write_config(tmp_path: Path, emu: Emulator, platform: Platform | None = None) -> Path:
    platform = platform or ADOBE
    path = tmp_path / "syncd.toml"
    path.write_text(
        f"""
log_format = "json"
shutdown_grace = 0.3

[store]
path = "{tmp_path / "syncd.db"}"

[http]
max_attempts = 2
backoff_base = 0.01

[[sources]]
name = "shop"
page_size = 10
max_concurrency = 2
schedule = "1h"
{platform.section(emu)}"""
    )
    return path


async def start_syncd(
    config: Path, *args: str, platform: Platform | None = None
) -> asyncio.subprocess.Process:
    platform = platform or ADOBE
    env = {**os.environ, platform.secret_env: platform.secret, "PYTHONUNBUFFERED": "1"}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "syncd", "--config", str(config), *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


def stored_count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        return int(query(db, "SELECT count(*) FROM products")[0][0])
    except Exception:  # the schema may not exist yet
        return 0


async def test_sigterm_leaves_a_cancelled_run_and_a_consistent_database(tmp_path: Path) -> None:
    """SIGTERM mid-run: exit 0 within the grace period, run `cancelled`, only whole pages stored."""
    async with slow_emulator(ADOBE) as emu:
        config = write_config(tmp_path, emu, ADOBE)
        db = tmp_path / "syncd.db"
        proc = await start_syncd(config, "run")
        await until(lambda: stored_count(db) >= 100, limit=30)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            _, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()[-2000:]
    ((status, error, seen, pages),) = query(
        db, "SELECT status, error, items_seen, pages FROM sync_runs"
    )
    assert status == "cancelled" and "stopped" in error
    stored = stored_count(db)
    assert stored == seen == pages * 10  # every counted page fully stored, nothing half-written
    assert 100 <= stored < 2000
    assert b'"daemon.stopped"' in stderr


@pytest.mark.parametrize("platform", PLATFORMS, ids=lambda p: p.name)
async def test_sigkill_mid_sync_is_detected_and_the_next_run_resumes(
    tmp_path: Path, platform: Platform
) -> None:
    """SIGKILL of `syncd sync`: the next run marks it failed, resumes, and ends exact and cheaper."""
    async with slow_emulator(platform) as emu:
        api = platform.api(emu)
        config = write_config(tmp_path, emu, platform)
        db = tmp_path / "syncd.db"
        proc = await start_syncd(config, "sync", "shop", platform=platform)
        await until(lambda: stored_count(db) >= 400, limit=30)
        proc.kill()
        _, stderr = await proc.communicate()
        assert platform.secret.encode() not in stderr
        assert query(db, "SELECT status FROM sync_runs") == [("running",)]
        stored_before = stored_count(db)
        api.stats.reset()
        overrides: dict[str, Any] = {"page_size": 10, "max_concurrency": 4}
        settings = settings_for(db, platform.source(emu, **overrides))
        async with Runtime(settings) as runtime:
            result = await runtime.sync("shop")
        assert result.ok and result.kind == "full"
        (killed,) = query(db, "SELECT status, error FROM sync_runs WHERE id = 1")
        assert killed[0] == "failed" and "crash or kill" in killed[1]
        # Page 1 again, only the pages not committed before the kill, and the probe (syncd's own
        # count: a request the killed process had on the wire may still be counted by the emulator).
        assert result.totals.requests == 1 + 200 - stored_before // 10 + 1
        assert api.stats.requests < 200 - 30  # committed pages were not fetched again
        assert stored_products(db, "shop") == api.catalog.snapshot()
    assert query(db, "SELECT count(*) FROM products WHERE deleted_at IS NOT NULL") == [(0,)]


SIGNALS = {
    signal.SIGTERM: (143, "syncd sync was stopped by SIGTERM during the run",
                     "syncd: terminated (SIGTERM); the run is recorded as cancelled"),
    signal.SIGINT: (130, "the run was stopped before it finished", "syncd: interrupted"),
}  # fmt: skip


@pytest.mark.parametrize("sig", list(SIGNALS), ids=lambda s: s.name)
async def test_a_signal_cancels_a_manual_sync_records_it_and_exits_128_plus_it(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """SIGTERM as SIGINT (Ctrl-C) mid-run: the run is `cancelled` (not left `running`) with a
    reason that speaks of no daemon, the final `sync.finished` line is logged, one line says so,
    exit 143 (130)."""
    code, reason, last_line = SIGNALS[sig]
    async with slow_emulator(ADOBE) as emu:
        config = write_config(tmp_path, emu)
        db = tmp_path / "syncd.db"
        proc = await start_syncd(config, "sync", "shop")
        await until(lambda: stored_count(db) >= 100, limit=30)
        proc.send_signal(sig)
        async with asyncio.timeout(15):
            _, stderr_bytes = await proc.communicate()
    stderr = stderr_bytes.decode()
    assert proc.returncode == code, stderr[-2000:]
    ((status, error, seen, pages),) = query(
        db, "SELECT status, error, items_seen, pages FROM sync_runs"
    )
    assert status == "cancelled", (status, error)
    assert error == reason
    assert stored_count(db) == seen == pages * 10  # whole pages only
    lines = stderr.strip().splitlines()
    assert lines[-1] == last_line
    events = [json.loads(line) for line in lines if line.startswith("{")]
    finished = [e for e in events if e["event"] == "sync.finished"]
    assert len(finished) == 1 and finished[0]["status"] == "cancelled"
    assert "Traceback" not in stderr
