"""Real processes and real signals: SIGTERM drains `syncd run`, SIGKILL of `syncd sync` resumes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from syncd.daemon import Runtime
from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig
from tests.support import adobe_source, query, settings_for, stored_products, until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def slow_emu() -> AsyncIterator[Emulator]:
    """2,000 products served slowly (10 ms a request) so a run lasts long enough to interrupt."""
    async with Emulator(
        EmulatorConfig(adobe=AdobeConfig(products=2000, latency=0.01), seed=5)
    ) as emu:
        yield emu


def write_config(tmp_path: Path, emu: Emulator) -> Path:
    adobe = emu.adobe.config
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
kind = "adobe_commerce"
base_url = "{emu.url}"
page_size = 10
max_concurrency = 2
schedule = "1h"

[sources.auth]
token_url = "{emu.ims_token_url}"
client_id = "{adobe.client_id}"
org_id = "{adobe.org_id}"
"""
    )
    return path


async def start_syncd(config: Path, *args: str) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "SYNCD_SECRET_SHOP_CLIENT_SECRET": "syncd-emulator-secret",
        "PYTHONUNBUFFERED": "1",
    }
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


async def test_sigterm_leaves_a_cancelled_run_and_a_consistent_database(
    tmp_path: Path, slow_emu: Emulator
) -> None:
    """SIGTERM mid-run: exit 0 within the grace period, run `cancelled`, only whole pages stored."""
    config = write_config(tmp_path, slow_emu)
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


async def test_sigkill_mid_sync_is_detected_and_the_next_run_resumes(
    tmp_path: Path, slow_emu: Emulator
) -> None:
    """SIGKILL of `syncd sync`: the next run marks it failed, resumes, and ends exact and cheaper."""
    config = write_config(tmp_path, slow_emu)
    db = tmp_path / "syncd.db"
    proc = await start_syncd(config, "sync", "shop")
    await until(lambda: stored_count(db) >= 400, limit=30)
    proc.kill()
    await proc.wait()
    assert query(db, "SELECT status FROM sync_runs") == [("running",)]
    slow_emu.adobe.stats.reset()
    settings = settings_for(db, adobe_source(slow_emu, page_size=10, max_concurrency=4))
    async with Runtime(settings) as runtime:
        result = await runtime.sync("shop")
    assert result.ok and result.kind == "full"
    (killed,) = query(db, "SELECT status, error FROM sync_runs WHERE id = 1")
    assert killed[0] == "failed" and "crash or kill" in killed[1]
    assert slow_emu.adobe.stats.requests < 200 - 30  # committed pages were not fetched again
    assert stored_products(db, "shop") == slow_emu.adobe.catalog.snapshot()
    assert query(db, "SELECT count(*) FROM products WHERE deleted_at IS NOT NULL") == [(0,)]
