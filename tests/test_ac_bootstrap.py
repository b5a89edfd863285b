"""`syncd auth` for AmeriCommerce: desktop and web flows against the emulator, in both schemes.

The web flow goes through a real loopback redirect: the test is the operator's browser.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from syncd.auth import EndpointResponse
from syncd.auth.americommerce.bootstrap import AmeriCommerceAuthorizer, UserLogin, install_grant
from syncd.auth.americommerce.callback import RedirectListener, loopback_target
from syncd.errors import AuthError, ConfigError
from tests.ac_support import USER, USER_KEY, AcWorld, ac_world, auth_settings, browse, free_port
from tests.clocks import FakeClock, ManualClock
from tests.conftest import settle

MIXED_CASE_REDIRECT = "http://127.0.0.1:8765/CallBack"


async def _web_flow(world: AcWorld, **settings: object) -> tuple[object, URL, int, str]:
    """Run the web flow with the test as the browser; returns (token or error, location, status, page)."""
    authorizer = world.authorizer(auth_settings(**settings))
    shown: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    flow = asyncio.create_task(authorizer.web(within=5, show=shown.set_result))
    url = await asyncio.wait_for(shown, 5)
    location, status, page = await browse(world.session, url)
    try:
        outcome: object = await flow
    except AuthError as exc:
        outcome = exc
    return outcome, location, status, page


@pytest.mark.parametrize("mode", ["prose", "summary"])
async def test_legacy_desktop_flow_completes(tmp_path: Path, clock: FakeClock, mode: str) -> None:
    """Desktop login then exchange, signed per desktop_signature = the store's reading; the token works.

    The redirect_url has upper case: the desktop exchange signs it as written (only the web one
    lowercases it), so a lowercasing signature would be refused.
    """
    async with ac_world(
        tmp_path / "a.db", clock, scheme="legacy", desktop_exchange_signature=mode
    ) as world:
        settings = auth_settings(
            auth_scheme="legacy", desktop_signature=mode, redirect_url=MIXED_CASE_REDIRECT
        )
        token = await world.authorizer(settings).desktop(UserLogin(USER, USER_KEY))
        assert token.expires_at == clock.now() + timedelta(seconds=3600)
        assert token.refresh_token in world.emu.americommerce.oauth.refresh_tokens
        provider = world.provider(settings)
        await install_grant(world.cache, world.store, provider, token, "ac", clock.now())
        answer = await world.products(world.client(provider))
        assert answer.status == 200 and answer.data["total_count"] == 20


@pytest.mark.parametrize(("ours", "store"), [("prose", "summary"), ("summary", "prose")])
async def test_desktop_signature_mismatch_points_at_the_option(
    tmp_path: Path, clock: FakeClock, ours: str, store: str
) -> None:
    """When the store reads the document the other way, the error names the option, not a guess."""
    async with ac_world(
        tmp_path / "a.db", clock, scheme="legacy", desktop_exchange_signature=store
    ) as world:
        settings = auth_settings(auth_scheme="legacy", desktop_signature=ours)
        with pytest.raises(AuthError) as caught:
            await world.authorizer(settings).desktop(UserLogin(USER, USER_KEY))
        message = str(caught.value)
        assert "signature rejected: see option desktop_signature" in message
        assert f"now {ours!r}" in message and f"also describes {store!r}" in message
        assert "HTTP 401" in message
        assert not any(secret in message for secret in world.secrets())


async def test_desktop_login_refusal_names_the_user_key(tmp_path: Path, clock: FakeClock) -> None:
    """A wrong user API key: a clear message that says where the key lives; the key is not in it."""
    async with ac_world(tmp_path / "a.db", clock, scheme="legacy") as world:
        settings = auth_settings(auth_scheme="legacy")
        with pytest.raises(AuthError) as caught:
            await world.authorizer(settings).desktop(UserLogin(USER, "not-the-key"))
        message = str(caught.value)
        assert "refused the desktop login of 'jane' (HTTP 401 Unauthorized: Invalid signature)" in (
            message
        )
        assert "View User Authorization Key" in message and "not-the-key" not in message


async def test_current_scheme_has_no_desktop_flow(tmp_path: Path, clock: FakeClock) -> None:
    """Asking the current scheme for the desktop flow is a configuration error, before any request."""
    async with ac_world(tmp_path / "a.db", clock) as world:
        with pytest.raises(ConfigError, match="has no desktop flow"):
            await world.authorizer(auth_settings()).desktop(UserLogin(USER, USER_KEY))
        assert world.emu.americommerce.stats.token_requests == 0


@pytest.mark.parametrize("body_format", ["json", "form"])
@pytest.mark.parametrize("scheme", ["legacy", "current"])
async def test_web_flow_through_a_real_loopback_redirect(
    tmp_path: Path, scheme: str, body_format: str
) -> None:
    """Authorise URL → store's 302 → our listener on the redirect URL → signed exchange → working token."""
    clock = ManualClock()  # its sleep never ends by itself: the listener waits for the browser
    redirect = f"http://127.0.0.1:{free_port()}/Syncd/CallBack"  # the case survives until signing
    async with ac_world(tmp_path / "a.db", clock, scheme=scheme) as world:
        token, location, status, page = await _web_flow(
            world, auth_scheme=scheme, redirect_url=redirect, body_format=body_format
        )
        assert str(location).startswith(redirect + "?")
        assert status == 200 and "you can close this window" in page
        assert not isinstance(token, Exception), token
        settings = auth_settings(auth_scheme=scheme, redirect_url=redirect)
        provider = world.provider(settings)
        await install_grant(world.cache, world.store, provider, token, "ac", clock.now())  # type: ignore[arg-type]
        assert (await world.products(world.client(provider))).status == 200
        authorize = world.emu.americommerce.stats.requests_to("/api/oauth")[0].query
        names = ("app_id", "redirect_url") if scheme == "legacy" else ("client_id", "redirect_uri")
        assert set(authorize) == {*names, "scope"} and authorize[names[1]] == redirect


async def test_web_flow_error_redirect_becomes_a_clear_message(tmp_path: Path) -> None:
    """error/error_reason/error_description come back as one sentence; the browser is told too."""
    clock = ManualClock()  # its sleep never ends by itself: the listener waits for the browser
    redirect = f"http://127.0.0.1:{free_port()}/cb"
    async with ac_world(tmp_path / "a.db", clock, deny_web_grant=True) as world:
        error, _, status, page = await _web_flow(world, redirect_url=redirect)
        assert isinstance(error, AuthError)
        assert str(error) == (
            "the store refused the authorisation: access_denied (user_denied): "
            "The user denied your request."
        )
        assert status == 400 and "access_denied" in page
        assert world.emu.americommerce.stats.requests_to("/api/oauth/access_token") == []


async def test_web_exchange_refusal_is_explained(tmp_path: Path) -> None:
    """A wrong app secret fails the exchange with the store's words and what to check."""
    clock = ManualClock()  # its sleep never ends by itself: the listener waits for the browser
    redirect = f"http://127.0.0.1:{free_port()}/cb"
    async with ac_world(tmp_path / "a.db", clock) as world:
        error, _, status, _ = await _web_flow(
            world, redirect_url=redirect, app_secret="wrong-secret-value"
        )
        assert status == 200
        assert isinstance(error, AuthError)
        assert "(HTTP 401 Unauthorized: Invalid signature)" in str(error)
        assert "check app_secret" in str(error) and "wrong-secret-value" not in str(error)


async def test_web_flow_waits_a_bounded_time(tmp_path: Path, clock: FakeClock) -> None:
    """No redirect within the limit (on the injected clock, so no real wait): a clear error, and
    the port is released."""
    port = free_port()
    async with ac_world(tmp_path / "a.db", clock) as world:
        authorizer = world.authorizer(auth_settings(redirect_url=f"http://127.0.0.1:{port}/cb"))
        urls: list[str] = []
        with pytest.raises(
            AuthError, match=r"no redirect reached http://127\.0\.0\.1:\d+/cb within 300s"
        ):
            await authorizer.web(within=300, show=urls.append)
        assert clock.slept == [300]
        assert urls and urls[0].startswith(world.emu.url + "/api/oauth?client_id=app-17&")
        async with RedirectListener(f"http://127.0.0.1:{port}/cb"):
            pass  # bindable again


async def test_listener_times_out_on_its_clock_not_real_time() -> None:
    """wait() gives up when the injected clock passes the limit, not before, and not on real time."""
    clock = ManualClock()
    async with RedirectListener(f"http://127.0.0.1:{free_port()}/cb", clock=clock) as listener:
        waiting = asyncio.create_task(listener.wait(60))
        await settle()
        clock.advance(59)
        await settle()
        assert not waiting.done()
        clock.advance(1)
        with pytest.raises(AuthError, match=r"within 60s"):
            await waiting


async def test_listener_ignores_stray_requests(tmp_path: Path) -> None:
    """Other paths get 404 and a bare hit 400; the first real callback wins, later ones get 410."""
    base = f"http://127.0.0.1:{free_port()}"
    async with RedirectListener(base + "/cb") as listener, aiohttp.ClientSession() as session:
        async with session.get(base + "/favicon.ico") as other:
            assert other.status == 404
        async with session.get(base + "/cb") as bare:
            assert bare.status == 400
        async with session.get(base + "/cb", params={"auth_id": "a1", "code": "c1"}) as hit:
            assert hit.status == 200
        async with session.get(base + "/cb", params={"auth_id": "a2", "code": "c2"}) as late:
            assert late.status == 410
        callback = await listener.wait(1)
        assert (callback.auth_id, callback.code) == ("a1", "c1")
    odd = f"http://127.0.0.1:{free_port()}/a%20b/{{x}}"
    async with RedirectListener(odd) as listener, aiohttp.ClientSession() as session:
        async with session.get(odd, params={"auth_id": "a3", "code": "c3"}) as hit:
            assert hit.status == 200
        assert (await listener.wait(1)).auth_id == "a3"
        assert "c1" not in repr(callback)


@pytest.mark.parametrize(
    "redirect",
    [
        "https://127.0.0.1:8765/cb",
        "http://app.example.com/cb",
        "http://10.1.2.3:8765/cb",
        "http://0.0.0.0:8765/cb",
        "http://127.0.0.1:0/cb",
        "MyDesktopApp",
    ],
)
def test_listener_refuses_a_redirect_it_cannot_safely_serve(redirect: str) -> None:
    """Only http:// on a loopback host with a real port: anything else is one clear config line."""
    with pytest.raises(ConfigError) as caught:
        loopback_target(redirect)
    (problem,) = caught.value.problems
    assert problem.startswith(f"auth.redirect_url: {redirect!r}")


@pytest.mark.parametrize(
    ("redirect", "target"),
    [
        ("http://127.0.0.1:8765/callback", ("127.0.0.1", 8765, "/callback")),
        ("http://localhost/cb?x=1", ("localhost", 80, "/cb")),
        ("http://[::1]:9000/", ("::1", 9000, "/")),
        ("http://127.0.0.2:9000", ("127.0.0.2", 9000, "/")),
        ("http://127.0.0.1:9000/a%20b/{x}", ("127.0.0.1", 9000, "/a b/{x}")),
    ],
)
def test_listener_binds_the_redirect_urls_host_and_port(
    redirect: str, target: tuple[str, int, str]
) -> None:
    """Host, port (80 by default) and path come from the configured redirect URL."""
    assert loopback_target(redirect) == target


async def test_installing_a_grant_clears_needs_reauth(tmp_path: Path, clock: FakeClock) -> None:
    """`syncd auth` ends an operator action: the flag goes, the token is current, an event says so."""
    async with ac_world(tmp_path / "a.db", clock) as world:
        await world.store.set_needs_reauth("ac", "refresh refused", clock.now())
        token = await world.web_grant()
        provider = world.provider(auth_settings())
        await install_grant(world.cache, world.store, provider, token, "ac", clock.now())
        assert not (await world.store.source_state("ac")).needs_reauth
        assert (await world.cache.current(provider)) == token
        (event,) = await world.store.token_events("ac")
        assert (event.event, event.fingerprint) == ("issued", token.fingerprint)


class QueuedEndpoint:
    """A token endpoint that answers each POST with the next (status, JSON body) of a script."""

    def __init__(self, *answers: tuple[int, dict[str, object]]) -> None:
        self.answers = list(answers)

    async def post_form(
        self, url: str, fields: Mapping[str, str], *, as_json: bool = False
    ) -> EndpointResponse:
        status, body = self.answers.pop(0)
        return EndpointResponse(status, "application/json", json.dumps(body).encode())


@pytest.mark.parametrize(
    ("status", "details", "advised"),
    [
        (401, "Invalid signature", True),
        (400, "Invalid signature", True),
        (403, "Forbidden", True),
        (400, "The signature does not match", True),
        (400, "auth_id is required", False),
        (404, "Not Found", False),
    ],
)
async def test_the_signature_advice_follows_the_refusal_not_only_401(
    clock: FakeClock, status: int, details: str, advised: bool
) -> None:
    """A store that refuses a signature with 400 or 403 gets the desktop_signature advice too;
    a refusal that names another cause does not."""
    endpoint = QueuedEndpoint(
        (200, {"auth_id": "a1", "code": "c1"}),
        (status, {"status_code": status, "message": "Refused", "details": details}),
    )
    settings = auth_settings(auth_scheme="legacy")
    authorizer = AmeriCommerceAuthorizer(settings, "https://shop.example", endpoint, clock)
    with pytest.raises(AuthError) as caught:
        await authorizer.desktop(UserLogin(USER, USER_KEY))
    message = str(caught.value)
    assert f"(HTTP {status} Refused: {details})" in message
    assert ("signature rejected: see option desktop_signature" in message) is advised
