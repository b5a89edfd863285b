"""Credentials go only where they were configured: no request syncd makes follows a redirect.

Each platform's token path and API path answer 302/307 to a second loopback origin that records
what it receives (and would answer with a token and a page of its own). Nothing may reach it; the
run or token request fails with one line naming the status and the target's origin only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from syncd.auth.americommerce.bootstrap import UserLogin
from syncd.emulator import AdobeConfig, AmeriCommerceConfig, Emulator, EmulatorConfig, Fault
from syncd.errors import TransportError
from syncd.http.client import redirect_origin
from syncd.runtime import Runtime
from tests.ac_support import USER, USER_KEY, ac_world, auth_settings
from tests.clocks import FakeClock
from tests.elsewhere import Elsewhere
from tests.support import (
    ac_source,
    adobe_source,
    query,
    settings_for,
    stored_products,
)

TOKEN = "ac-console-token"


@pytest.fixture
async def elsewhere() -> AsyncIterator[Elsewhere]:
    async with Elsewhere() as server:
        yield server


def redirect(elsewhere: Elsewhere, target: str, status: int) -> Fault:
    return Fault("redirect", target=target, status=status, location=elsewhere.url, times=None)  # type: ignore[arg-type]


def assert_refused(error: str | None, status: int, elsewhere: Elsewhere) -> None:
    """One line naming the status and the other origin, never the Location's path or query."""
    assert error is not None
    assert f"answered HTTP {status}, a redirect to {elsewhere.url}:" in error
    assert elsewhere.url + "/" not in error and "searchCriteria" not in error
    assert "\n" not in error


@pytest.mark.parametrize(("target", "status"), [("token", 307), ("api", 302), ("api", 307)])
async def test_adobe_redirects_are_refused(
    tmp_path: Path, elsewhere: Elsewhere, target: str, status: int
) -> None:
    """IMS or the catalog API redirecting elsewhere: the client secret, bearer token, x-api-key
    and org id stay home; the run fails at once (not retried) and stores nothing."""
    db = tmp_path / "s.db"
    async with Emulator(EmulatorConfig(adobe=AdobeConfig(products=30), seed=3)) as emu:
        emu.adobe.faults.add(redirect(elsewhere, target, status))
        async with Runtime(settings_for(db, adobe_source(emu))) as runtime:
            result = await runtime.sync("shop")
        assert result.status == "failed"
        assert_refused(result.error, status, elsewhere)
        assert emu.adobe.config.client_secret not in (result.error or "")
        assert elsewhere.received == []
        stats = emu.adobe.stats
        assert (stats.token_requests, stats.requests) == ((1, 0) if target == "token" else (1, 1))
    assert stored_products(db, "shop") == {}
    assert query(db, "SELECT count(*) FROM products") == [(0,)]


@pytest.mark.parametrize("status", [302, 307])
async def test_americommerce_api_redirect_is_refused(
    tmp_path: Path, elsewhere: Elsewhere, status: int
) -> None:
    """The products API redirecting elsewhere: X-AC-Auth-Token (which aiohttp would carry across
    origins) is never sent there; the run fails naming the redirect and stores nothing."""
    db = tmp_path / "s.db"
    config = AmeriCommerceConfig(products=30, static_tokens=(TOKEN,), call_limit=100_000)
    async with Emulator(EmulatorConfig(americommerce=config, seed=3)) as emu:
        emu.americommerce.faults.add(redirect(elsewhere, "api", status))
        async with Runtime(settings_for(db, ac_source(emu))) as runtime:
            result = await runtime.sync("shop")
        assert result.status == "failed"
        assert_refused(result.error, status, elsewhere)
        assert TOKEN not in (result.error or "")
        assert elsewhere.received == []
        assert emu.americommerce.stats.requests == 1
    assert query(db, "SELECT count(*) FROM products") == [(0,)]


async def test_americommerce_refresh_redirect_is_refused(
    tmp_path: Path, clock: FakeClock, elsewhere: Elsewhere
) -> None:
    """The refresh endpoint redirecting elsewhere: the signed refresh (refresh token, signature)
    is not replayed there; the request fails naming the redirect, once, and the grant is kept."""
    async with ac_world(tmp_path / "a.db", clock) as world:
        provider = world.provider(auth_settings())
        grant = await world.web_grant()
        await world.cache.install(provider, grant, "ac")
        clock.advance(3601)
        world.emu.americommerce.faults.add(redirect(elsewhere, "token", 307))
        client = world.client(provider)
        with pytest.raises(TransportError) as caught:
            await world.products(client)
        assert_refused(str(caught.value), 307, elsewhere)
        assert elsewhere.received == []
        assert world.refreshes() == 1
        kept = await world.store.load_token(provider.cache_key)
        assert kept is not None and kept.refresh_token == grant.refresh_token


async def test_americommerce_desktop_login_redirect_is_refused(
    tmp_path: Path, clock: FakeClock, elsewhere: Elsewhere
) -> None:
    """`syncd auth`'s desktop login redirected elsewhere: the username and its signature stay
    home, and the operator reads which origin the store pointed at."""
    async with ac_world(tmp_path / "a.db", clock, scheme="legacy") as world:
        world.emu.americommerce.faults.add(redirect(elsewhere, "token", 302))
        authorizer = world.authorizer(auth_settings(auth_scheme="legacy"))
        with pytest.raises(TransportError) as caught:
            await authorizer.desktop(UserLogin(USER, USER_KEY))
        assert_refused(str(caught.value), 302, elsewhere)
        assert USER_KEY not in str(caught.value)
        assert elsewhere.received == []
        assert world.emu.americommerce.stats.token_requests == 1


@pytest.mark.parametrize(
    ("location", "shown"),
    [
        ("https://user:pw@other.example:8443/p?token=s3cret#x", "https://other.example:8443"),
        ("/elsewhere?code=abc", "http://127.0.0.1:9"),
        ("//[::1]:81/x", "http://[::1]:81"),
        (None, "nowhere (no Location header)"),
        ("javascript:alert(1)", "an unreadable Location"),
        ("http://[::1/x", "an unreadable Location"),
    ],
)
def test_a_redirect_target_is_shown_as_its_origin_only(location: str | None, shown: str) -> None:
    """scheme://host[:port]: a Location's user info, path, query and fragment are never shown."""
    assert redirect_origin("http://127.0.0.1:9/rest/V1/products", location) == shown
