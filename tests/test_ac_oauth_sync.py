"""AmeriCommerce end to end on an OAuth grant: the real source adapter, token cache and engine.

The operator's desktop flow installs a grant, the daemon syncs with it, refreshes it when it
expires (single-use refresh tokens rotate), and a grant the store revokes parks that source alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from syncd.auth.americommerce.bootstrap import AmeriCommerceAuthorizer, UserLogin, install_grant
from syncd.auth.americommerce.refresh import AmeriCommerceTokenProvider
from syncd.config import AmeriCommerceSourceSettings, Settings
from syncd.daemon import Daemon
from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig
from syncd.runtime import Runtime
from tests.ac_support import USER, USER_KEY, ac_config, auth_settings
from tests.clocks import FakeClock
from tests.support import adobe_source, query, settings_for, stored_products

LIFETIME = 3600


def oauth_source(emu: Emulator, **auth: Any) -> AmeriCommerceSourceSettings:
    """An AmeriCommerce source that authenticates with a grant from the legacy desktop flow."""
    return AmeriCommerceSourceSettings(
        name="ac",
        kind="americommerce",
        base_url=emu.url,  # type: ignore[arg-type]
        page_size=10,
        max_concurrency=4,
        # Upper case in the URL: the desktop exchange must sign it as written, not lowercased.
        auth=auth_settings(
            auth_scheme="legacy", redirect_url="http://127.0.0.1:8765/CallBack", **auth
        ),
    )


async def bootstrap(runtime: Runtime, clock: FakeClock) -> None:
    """What `syncd auth ac` does: the desktop flow, then the grant installed for the source."""
    source = runtime.settings.source("ac")
    assert isinstance(source, AmeriCommerceSourceSettings)
    url = str(source.base_url)
    grant = await AmeriCommerceAuthorizer(source.auth, url, runtime.pool, clock).desktop(
        UserLogin(USER, USER_KEY)
    )
    provider = AmeriCommerceTokenProvider(source.auth, url, runtime.pool, clock, source="ac")
    await install_grant(runtime.cache, runtime.store, provider, grant, "ac", clock.now())


def emulator(clock: FakeClock, **americommerce: Any) -> Emulator:
    config = EmulatorConfig(
        americommerce=ac_config(
            products=57, scheme="legacy", token_lifetime=LIFETIME, **americommerce
        ),
        adobe=AdobeConfig(products=23),
        seed=21,
    )
    return Emulator(config, clock=clock)


async def test_grant_syncs_then_rotates_and_survives_a_restart(tmp_path: Path) -> None:
    """A desktop grant syncs every product; after expiry one refresh rotates the single-use
    refresh token, and a new process on the same database refreshes again with the rotated one."""
    clock = FakeClock()
    db = tmp_path / "ac.db"
    async with emulator(clock, refresh_tokens="single_use") as emu:
        settings = settings_for(db, oauth_source(emu))
        async with Runtime(settings, clock=clock) as runtime:
            await bootstrap(runtime, clock)
            first = await runtime.sync("ac")
            assert first.ok, first.error
            assert stored_products(db, "ac") == emu.americommerce.catalog.snapshot()
            clock.advance(LIFETIME + 1)
            second = await runtime.sync("ac", "full")
            assert second.ok, second.error
        stats = emu.americommerce.stats
        assert len(stats.requests_to("/api/oauth/refresh")) == 1
        assert stats.expired_token_requests == 0  # refreshed ahead, never sent stale

        clock.advance(LIFETIME + 1)
        async with Runtime(settings, clock=clock) as restarted:
            third = await restarted.sync("ac", "full")
        assert third.ok, third.error
        assert len(stats.requests_to("/api/oauth/refresh")) == 2
        events = [row[0] for row in query(db, "SELECT event FROM token_events ORDER BY id")]
        assert events.count("refreshed") == 2
        assert "failed" not in events


async def test_revoked_grant_parks_only_that_source(tmp_path: Path) -> None:
    """When the store revokes the grant, the AmeriCommerce run fails into needs_reauth, its next
    run is skipped, and the Adobe source beside it keeps syncing."""
    clock = FakeClock()
    db = tmp_path / "two.db"
    async with emulator(clock) as emu:
        settings: Settings = settings_for(db, oauth_source(emu), adobe_source(emu, name="adobe"))
        async with Runtime(settings, clock=clock) as runtime:
            await bootstrap(runtime, clock)
            daemon = Daemon(runtime, handle_signals=False)
            assert (ok := await daemon.run_once("ac")) is not None and ok.ok
            emu.americommerce.revoke_tokens(refresh_tokens=True)
            clock.advance(LIFETIME + 1)

            refused = await daemon.run_once("ac")
            assert refused is not None and refused.status == "failed"
            assert refused.error is not None and "syncd auth ac" in refused.error
            assert (await runtime.store.source_state("ac")).needs_reauth
            assert await daemon.run_once("ac") is None  # skipped until an operator acts
            adobe = await daemon.run_once("adobe")
            assert adobe is not None and adobe.ok, adobe and adobe.error
            assert not (await runtime.store.source_state("adobe")).needs_reauth

            await bootstrap(runtime, clock)  # the operator runs `syncd auth ac` again
            back = await daemon.run_once("ac")
            assert back is not None and back.ok, back and back.error
    assert stored_products(db, "ac") == emu.americommerce.catalog.snapshot()
