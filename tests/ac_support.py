"""AmeriCommerce auth tests: an emulator + store + pool + cache on one FakeClock, and a browser stand-in."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from syncd.auth import AccessToken, TokenCache
from syncd.auth.americommerce.bootstrap import AmeriCommerceAuthorizer
from syncd.auth.americommerce.refresh import AmeriCommerceTokenProvider
from syncd.config import AmeriCommerceAuthSettings, HttpSettings
from syncd.emulator import AmeriCommerceConfig, Emulator, EmulatorConfig
from syncd.http import ClientPool, RequestStats, SourceAuth, SourceClient
from syncd.http.response import Response
from syncd.store import SqliteStore
from tests.clocks import FakeClock

APP = "app-17"
SECRET = "ac-app-secret-do-not-log"
SCOPE = "read_catalog"
USER = "jane"
USER_KEY = "jane-user-key-do-not-log"
FAST_HTTP = HttpSettings(max_attempts=3, backoff_base=0.001, backoff_cap=0.01)


def ac_config(**overrides: Any) -> AmeriCommerceConfig:
    """An emulated store with our app, one user and a call limit high enough for fan-out tests."""
    fields: dict[str, Any] = {
        "products": 20,
        "app_id": APP,
        "app_secret": SECRET,
        "scope": SCOPE,
        "users": {USER: USER_KEY},
        "call_limit": 1000,
    }
    fields.update(overrides)
    return AmeriCommerceConfig(**fields)


def auth_settings(**overrides: Any) -> AmeriCommerceAuthSettings:
    """Auth settings matching `ac_config`."""
    fields: dict[str, Any] = {"app_secret": SECRET, "scope": SCOPE}
    if "client_id" not in overrides:
        fields["app_id"] = APP
    fields.update(overrides)
    return AmeriCommerceAuthSettings(**fields)


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def sha256_hex(text: str) -> str:
    """The signature primitive, for tests that sign by hand."""
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class AcWorld:
    """One emulated store and the syncd parts that talk to it, all on `clock`."""

    emu: Emulator
    clock: FakeClock
    store: SqliteStore
    pool: ClientPool
    cache: TokenCache
    session: aiohttp.ClientSession

    def provider(
        self, settings: AmeriCommerceAuthSettings, source: str = "ac"
    ) -> AmeriCommerceTokenProvider:
        """The provider the source adapter builds."""
        return AmeriCommerceTokenProvider(
            settings, self.emu.url, self.pool, self.clock, source=source
        )

    def authorizer(self, settings: AmeriCommerceAuthSettings) -> AmeriCommerceAuthorizer:
        """What `syncd auth` uses."""
        return AmeriCommerceAuthorizer(settings, self.emu.url, self.pool, self.clock)

    def client(self, provider: AmeriCommerceTokenProvider, source: str = "ac") -> SourceClient:
        """A source client authenticated by `provider` through the shared cache."""
        return self.pool.client(
            name=source,
            max_concurrency=64,
            request_timeout=10,
            connect_timeout=5,
            auth=SourceAuth(provider, self.cache, source),
        )

    async def products(self, client: SourceClient) -> Response:
        """GET one fresh (uncached) page of products."""
        return await client.get_json(
            self.emu.url + "/api/v1/products",
            {"count": "5"},
            stats=RequestStats(),
            headers={"Cache-Control": "no-cache"},
        )

    def refreshes(self) -> int:
        """Refresh requests the store has answered."""
        return len(self.emu.americommerce.stats.requests_to("/api/oauth/refresh"))

    async def web_grant(self, scheme: str = "current") -> AccessToken:
        """A grant obtained by hand (signed here, not by syncd), as the store answered it."""
        return await hand_grant(self.emu, self.session, self.clock, scheme)

    def secrets(self) -> set[str]:
        """Every secret the store and its users hold: none may appear in a log or an event."""
        oauth = self.emu.americommerce.oauth
        values = {SECRET, USER_KEY, *oauth.access_tokens, *oauth.refresh_tokens}
        values.update(h.code for h in oauth.handshakes.values())
        return values


@asynccontextmanager
async def ac_world(db: Path, clock: FakeClock, **emulator: Any) -> AsyncIterator[AcWorld]:
    """Start an emulated AmeriCommerce store (configured by `emulator`) and open store and pool."""
    async with AsyncExitStack() as stack:
        config = EmulatorConfig(americommerce=ac_config(**emulator), seed=11)
        emu = await stack.enter_async_context(Emulator(config, clock=clock))
        store = await stack.enter_async_context(SqliteStore(db))
        pool = await stack.enter_async_context(ClientPool(FAST_HTTP, clock))
        session = await stack.enter_async_context(aiohttp.ClientSession())
        yield AcWorld(emu, clock, store, pool, TokenCache(store, clock), session)


async def browse(session: aiohttp.ClientSession, authorize_url: str) -> tuple[URL, int, str]:
    """Act as the operator's browser: open the authorise URL, follow the store's redirect by hand.

    Returns where the store redirected, and the status and text the listener answered there.
    """
    async with session.get(authorize_url, allow_redirects=False) as answer:
        assert answer.status == 302, await answer.text()
        location = URL(answer.headers["Location"], encoded=True)
    async with session.get(location, allow_redirects=False) as landed:
        return location, landed.status, await landed.text()


async def hand_grant(
    emu: Emulator, session: aiohttp.ClientSession, clock: FakeClock, scheme: str = "current"
) -> AccessToken:
    """Run the web flow with hand-made signatures (independent of syncd's) and return the grant."""
    cfg = emu.config.americommerce
    redirect = "https://app.example.com/cb"
    app_field, redirect_field = (
        ("app_id", "redirect_url") if scheme == "legacy" else ("client_id", "redirect_uri")
    )
    params = {app_field: cfg.app_id, "scope": cfg.scope, redirect_field: redirect}
    async with session.get(emu.url + "/api/oauth", params=params, allow_redirects=False) as answer:
        location = URL(answer.headers["Location"])
    signature = sha256_hex(
        cfg.app_secret + location.query["code"] + cfg.app_id + cfg.scope + redirect
    )
    body = {app_field: cfg.app_id, "auth_id": location.query["auth_id"], "signature": signature}
    async with session.post(emu.url + "/api/oauth/access_token", json=body) as answer:
        assert answer.status == 200, await answer.text()
        data = await answer.json()
    raw = data["expires"]
    expires = (
        clock.now() + timedelta(seconds=raw)
        if isinstance(raw, int)
        else datetime.fromisoformat(raw)
    )
    return AccessToken(
        data["access_token"], expires, clock.now(), refresh_token=data["refresh_token"]
    )
