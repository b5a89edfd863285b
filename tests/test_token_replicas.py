"""Two runtimes (replicas) on one PostgreSQL database and the AmeriCommerce emulator: one expired
grant with single-use refresh tokens, 200 concurrent requests across both, one refresh, and no
refresh token ever presented twice (counted by the emulator)."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import psycopg
import pytest

from syncd.auth import TokenCache
from syncd.auth.americommerce.refresh import AmeriCommerceTokenProvider
from syncd.clock import SystemClock
from syncd.config import AmeriCommerceSourceSettings, HttpSettings
from syncd.config.settings import StoreSettings
from syncd.emulator import Emulator, EmulatorConfig, Fault
from syncd.http import ClientPool, RequestStats, SourceAuth
from syncd.runtime import Runtime
from syncd.store.postgres import PostgresStore
from tests.ac_support import APP, SCOPE, SECRET, ac_config, auth_settings, hand_grant
from tests.clocks import FakeClock
from tests.support import settings_for
from tests.test_ac_oauth_sync import LIFETIME, bootstrap, emulator, oauth_source


async def test_200_requests_across_two_replicas_refresh_an_expired_grant_once(
    tmp_path: Path, postgres_url: str
) -> None:
    """Both replicas find the grant expired at once: one refreshes, the other waits for its token;
    every request is answered 200 and each refresh token is presented at most once."""
    clock = FakeClock()
    async with emulator(clock, refresh_tokens="single_use") as emu:
        settings = settings_for(tmp_path / "unused.db", oauth_source(emu)).model_copy(
            update={"store": StoreSettings(url=postgres_url, token_poll_interval=0.01)}
        )
        async with Runtime(settings, clock=clock) as one:
            clock.advance(1)  # another start second: another replica name
            async with Runtime(settings, clock=clock) as two:
                await bootstrap(one, clock)
                clock.advance(LIFETIME + 1)
                source = settings.source("ac")
                assert isinstance(source, AmeriCommerceSourceSettings)
                clients = []
                for runtime in (one, two):
                    provider = AmeriCommerceTokenProvider(
                        source.auth, emu.url, runtime.pool, clock, source="ac"
                    )
                    clients.append(
                        runtime.pool.client(
                            name="ac",
                            max_concurrency=100,
                            request_timeout=10,
                            connect_timeout=5,
                            auth=SourceAuth(provider, runtime.cache, "ac"),
                        )
                    )
                stats = RequestStats()
                responses = await asyncio.gather(
                    *(
                        client.get_json(
                            emu.url + "/api/v1/products",
                            {"count": "5"},
                            stats=stats,
                            headers={"Cache-Control": "no-cache"},
                        )
                        for _ in range(100)
                        for client in clients
                    )
                )
                events = await one.store.token_events("ac")
    assert [r.status for r in responses] == [200] * 200
    refreshes = emu.americommerce.stats.requests_to("/api/oauth/refresh")
    assert [r.status for r in refreshes] == [200]
    presented = emu.americommerce.oauth.presentations()
    assert max(presented.values()) == 1 and sum(presented.values()) == 1
    (refreshed,) = [e for e in events if e.event == "refreshed"]
    assert refreshed.owner in (one.owner, two.owner)
    waiter = two.owner if refreshed.owner == one.owner else one.owner
    # The other replica used the winner's token: waited for it (the usual case), or found it
    # saved already when its own callers arrived after the refresh.
    (reused,) = [e for e in events if e.event == "reused" and e.owner == waiter]
    assert reused.fingerprint == refreshed.fingerprint
    assert reused.detail in (
        f"refreshed by replica {refreshed.owner}",
        "persisted token still valid",
    )


def replica_config(tmp_path: Path, emu_url: str, postgres_url: str) -> Path:
    """Two sources on one store with one grant (same app, scheme and scope: one token row)."""
    sources = "".join(
        f"""
[[sources]]
name = "{name}"
kind = "americommerce"
base_url = "{emu_url}"
page_size = 10
max_concurrency = 4
schedule = "1h"

[sources.auth]
app_id = "{APP}"
scope = "{SCOPE}"
auth_scheme = "current"
"""
        for name in ("ac1", "ac2")
    )
    path = tmp_path / "syncd.toml"
    path.write_text(
        f"""
log_format = "json"

[store]
url = "{postgres_url}"
token_poll_interval = 0.05

[http]
max_attempts = 2
backoff_base = 0.01
{sources}"""
    )
    return path


@pytest.mark.timeout(60)
async def test_two_syncd_processes_on_one_database_refresh_the_grant_once(
    tmp_path: Path, postgres_url: str
) -> None:
    """Real `syncd sync` processes, one per source, both sources on one expired single-use grant:
    both sync every product, with one refresh and no refresh token presented twice."""
    config = EmulatorConfig(
        americommerce=ac_config(products=30, refresh_tokens="single_use"), seed=3
    )
    async with Emulator(config) as emu:
        async with aiohttp.ClientSession() as session:
            grant = await hand_grant(emu, session, FakeClock(datetime.now(UTC)), "current")
        clock = SystemClock()
        async with (
            PostgresStore(postgres_url) as store,
            ClientPool(HttpSettings(), clock) as pool,
        ):
            provider = AmeriCommerceTokenProvider(
                auth_settings(auth_scheme="current"), emu.url, pool, clock, source="ac1"
            )
            past = datetime.now(UTC) - timedelta(seconds=1)
            expired = replace(grant, expires_at=past, obtained_at=past - timedelta(hours=1))
            await TokenCache(store, clock).install(provider, expired, "ac1")
        # A refresh that takes a second: both processes find the token expired while it is on
        # the wire, so the one that lost the compare-and-set has to wait for it.
        emu.americommerce.faults.add(Fault("slow", target="token", delay=1.0, times=None))
        path = replica_config(tmp_path, emu.url, postgres_url)
        env = {
            **os.environ,
            "SYNCD_SECRET_AC1_APP_SECRET": SECRET,
            "SYNCD_SECRET_AC2_APP_SECRET": SECRET,
        }
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "syncd",
                "--config",
                str(path),
                "sync",
                name,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            for name in ("ac1", "ac2")
        ]
        outputs = await asyncio.gather(*(p.communicate() for p in procs))
        assert [p.returncode for p in procs] == [0, 0], outputs
        refreshes = emu.americommerce.stats.requests_to("/api/oauth/refresh")
        presented = emu.americommerce.oauth.presentations()
    assert [r.status for r in refreshes] == [200]
    assert max(presented.values()) == 1
    with psycopg.connect(postgres_url) as conn:
        counts: dict[str, int] = dict(
            conn.execute(
                "SELECT source, count(*) FROM products WHERE deleted_at IS NULL GROUP BY source"
            ).fetchall()
        )
        events = conn.execute(
            "SELECT event, owner, detail FROM token_events WHERE event IN ('refreshed', 'reused')"
        ).fetchall()
    assert counts == {"ac1": 30, "ac2": 30}
    ((winner, _),) = [(owner, detail) for event, owner, detail in events if event == "refreshed"]
    (waited,) = [detail for event, owner, detail in events if event == "reused" and owner != winner]
    assert waited in (f"refreshed by replica {winner}", "persisted token still valid")
