"""A real `syncd sync` of an AmeriCommerce store killed with SIGKILL, then resumed in-process."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from syncd.daemon import Runtime
from syncd.emulator import AmeriCommerceConfig, Emulator, EmulatorConfig
from tests.support import ac_source, query, settings_for, stored_products, until

pytestmark = pytest.mark.timeout(60)
TOKEN = "ac-console-token"


@pytest.fixture
async def slow_emu() -> AsyncIterator[Emulator]:
    """2,000 products served slowly (10 ms a request) so a run lasts long enough to interrupt."""
    config = AmeriCommerceConfig(
        products=2000, latency=0.01, static_tokens=(TOKEN,), call_limit=100_000
    )
    async with Emulator(EmulatorConfig(americommerce=config, seed=5)) as emu:
        yield emu


def write_config(tmp_path: Path, emu: Emulator) -> Path:
    path = tmp_path / "syncd.toml"
    path.write_text(
        f"""
log_format = "json"

[store]
path = "{tmp_path / "syncd.db"}"

[http]
max_attempts = 2
backoff_base = 0.01

[[sources]]
name = "shop"
kind = "americommerce"
base_url = "{emu.url}"
page_size = 10
max_concurrency = 2
schedule = "1h"

[sources.auth]
auth_scheme = "current"
"""
    )
    return path


def stored_count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        return int(query(db, "SELECT count(*) FROM products")[0][0])
    except Exception:  # the schema may not exist yet
        return 0


async def test_sigkill_mid_sync_is_detected_and_the_next_run_resumes(
    tmp_path: Path, slow_emu: Emulator
) -> None:
    """SIGKILL of `syncd sync`: the next run marks it failed, resumes, and ends exact and cheaper."""
    config = write_config(tmp_path, slow_emu)
    db = tmp_path / "syncd.db"
    env = {**os.environ, "SYNCD_SECRET_SHOP_STATIC_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "syncd", "--config", str(config), "sync", "shop",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    await until(lambda: stored_count(db) >= 400, limit=30)
    proc.kill()
    _, stderr = await proc.communicate()
    assert TOKEN.encode() not in stderr
    assert query(db, "SELECT status FROM sync_runs") == [("running",)]
    stored_before = stored_count(db)
    slow_emu.americommerce.stats.reset()
    settings = settings_for(db, ac_source(slow_emu, page_size=10, max_concurrency=4))
    async with Runtime(settings) as runtime:
        result = await runtime.sync("shop")
    assert result.ok and result.kind == "full"
    (killed,) = query(db, "SELECT status, error FROM sync_runs WHERE id = 1")
    assert killed[0] == "failed" and "crash or kill" in killed[1]
    # Page 1 again, only the pages not committed before the kill, and the probe (syncd's own
    # count: a request the killed process had on the wire may still be counted by the emulator).
    assert result.totals.requests == 1 + 200 - stored_before // 10 + 1
    assert slow_emu.americommerce.stats.requests < 200 - 30
    assert stored_products(db, "shop") == slow_emu.americommerce.catalog.snapshot()
    assert query(db, "SELECT count(*) FROM products WHERE deleted_at IS NOT NULL") == [(0,)]
