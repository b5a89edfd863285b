"""Real processes and real signals: SIGTERM drains `syncd run`, SIGKILL of `syncd sync` resumes
(on both platforms: the resume is the engine's, the request shapes are each adapter's)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from syncd.config import SourceSettings
from syncd.daemon import Runtime
from syncd.emulator import AdobeConfig, AmeriCommerceConfig, Emulator, EmulatorConfig
from syncd.emulator.adobe.app import AdobeEmulator
from syncd.emulator.americommerce.app import AmeriCommerceEmulator
from tests.support import ac_source, adobe_source, query, settings_for, stored_products, until

pytestmark = pytest.mark.timeout(60)
AC_TOKEN = "ac-console-token"


@dataclass(frozen=True)
class Platform:
    """What differs between the platforms for these tests: the emulator, the source's config
    section, its secret (given by environment, never to be printed), and the emulator's API."""

    name: str
    config: EmulatorConfig
    source_section: Callable[[Emulator], str]
    secret_env: str
    secret: str
    settings: Callable[..., SourceSettings]
    api: Callable[[Emulator], AdobeEmulator | AmeriCommerceEmulator]


def _adobe_section(emu: Emulator) -> str:
    adobe = emu.adobe.config
    return f"""kind = "adobe_commerce"
base_url = "{emu.url}"

[sources.auth]
token_url = "{emu.ims_token_url}"
client_id = "{adobe.client_id}"
org_id = "{adobe.org_id}"
"""


def _ac_section(emu: Emulator) -> str:
    return f"""kind = "americommerce"
base_url = "{emu.url}"

[sources.auth]
auth_scheme = "current"
"""


# 2,000 products served slowly (10 ms a request) so that a run lasts long enough to interrupt.
ADOBE = Platform(
    "adobe",
    EmulatorConfig(adobe=AdobeConfig(products=2000, latency=0.01), seed=5),
    _adobe_section,
    "SYNCD_SECRET_SHOP_CLIENT_SECRET",
    "syncd-emulator-secret",
    adobe_source,
    lambda emu: emu.adobe,
)
AMERICOMMERCE = Platform(
    "americommerce",
    EmulatorConfig(
        americommerce=AmeriCommerceConfig(
            products=2000, latency=0.01, static_tokens=(AC_TOKEN,), call_limit=100_000
        ),
        seed=5,
    ),
    _ac_section,
    "SYNCD_SECRET_SHOP_STATIC_TOKEN",
    AC_TOKEN,
    ac_source,
    lambda emu: emu.americommerce,
)


@asynccontextmanager
async def slow_emulator(platform: Platform) -> AsyncIterator[Emulator]:
    """The platform's slow emulator on loopback."""
    async with Emulator(platform.config) as emu:
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
{platform.source_section(emu)}"""
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


@pytest.mark.parametrize("platform", [ADOBE, AMERICOMMERCE], ids=lambda p: p.name)
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
        settings = settings_for(db, platform.settings(emu, **overrides))
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
