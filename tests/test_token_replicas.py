"""Two runtimes (replicas) on one PostgreSQL database and the AmeriCommerce emulator: one expired
grant with single-use refresh tokens, 200 concurrent requests across both, one refresh, and no
refresh token ever presented twice (counted by the emulator)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from syncd.auth.americommerce import AmeriCommerceTokenProvider
from syncd.clock import FakeClock
from syncd.config import AmeriCommerceSourceSettings
from syncd.config.settings import StoreSettings
from syncd.daemon import Runtime
from syncd.http import RequestStats, SourceAuth
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
