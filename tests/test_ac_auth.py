"""AmeriCommerce token provider: refresh by scheme, single-flight, rotation across restarts, refusals."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from structlog.testing import capture_logs

from syncd.auth import AccessToken, EndpointResponse, TokenCache, fingerprint
from syncd.auth.americommerce.bootstrap import UserLogin
from syncd.auth.americommerce.refresh import AmeriCommerceTokenProvider
from syncd.auth.americommerce.signatures import current_refresh_signature, legacy_refresh_signature
from syncd.auth.americommerce.wire import naive_zone, parse_expires
from syncd.emulator import Fault
from syncd.errors import AuthError, NeedsReauthError, ServerError, StoreError
from syncd.http import ClientPool
from syncd.store import SqliteStore, TokenRecord
from tests.ac_support import APP, FAST_HTTP, SECRET, USER, USER_KEY, ac_world, auth_settings
from tests.clocks import FakeClock

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-01T05:00:00.923-05:00", datetime(2026, 1, 1, 10, 0, 0, 923000, tzinfo=UTC)),
        ("2026-01-01T01:00:00Z", datetime(2026, 1, 1, 1, tzinfo=UTC)),
        ("2026-01-01T01:00:00.1234567+00:00", datetime(2026, 1, 1, 1, 0, 0, 123456, tzinfo=UTC)),
        ("2026-01-01T02:00:00", datetime(2026, 1, 1, 2, tzinfo=UTC)),
        (3600, NOW + timedelta(hours=1)),
        (1799.5, NOW + timedelta(seconds=1799.5)),
        (" 900 ", NOW + timedelta(seconds=900)),
        (None, None),
        ("", None),
    ],
)
def test_expires_is_a_datetime_or_seconds(value: object, expected: datetime | None) -> None:
    """Absolute ISO-8601 (any offset; none = UTC) or seconds as a number or numeric string."""
    expiry = parse_expires(value, NOW)
    assert (expiry.at, expiry.problem) == (expected, None)


@pytest.mark.parametrize(
    "value", ["soon", "2025-12-31T23:00:00Z", 0, -5, "nan", True, {"at": 1}, "2026-13-01T00:00:00"]
)
def test_unusable_expires_means_unknown_and_says_why(value: object) -> None:
    """Garbage, past or non-positive values give no expiry (refresh on 401), with a reason."""
    expiry = parse_expires(value, NOW)
    assert expiry.at is None and expiry.problem is not None and "expires" in expiry.problem


async def test_no_grant_yet_needs_an_operator(tmp_path: Path, clock: FakeClock) -> None:
    """Without a persisted grant there is nothing to refresh: NeedsReauthError naming the command."""
    async with ac_world(tmp_path / "a.db", clock) as world:
        client = world.client(world.provider(auth_settings(), source="shop"), source="shop")
        with pytest.raises(
            NeedsReauthError,
            match=r"source 'shop' has no AmeriCommerce grant yet: run 'syncd auth shop'",
        ):
            await world.products(client)
        assert world.emu.americommerce.stats.token_requests == 0


async def test_static_token_is_sent_and_never_refreshed(tmp_path: Path, clock: FakeClock) -> None:
    """An admin-console token needs no grant and outlives any clock."""
    async with ac_world(tmp_path / "a.db", clock, static_tokens=("console-token-1",)) as world:
        provider = world.provider(
            auth_settings(app_id="", app_secret=None, static_token="console-token-1")
        )
        client = world.client(provider)
        assert (await world.products(client)).status == 200
        clock.advance(5 * 365 * 86400)
        assert (await world.products(client)).status == 200
        assert world.emu.americommerce.stats.token_requests == 0


async def test_a_new_static_token_replaces_the_old_one(tmp_path: Path, clock: FakeClock) -> None:
    """Rotating static_token in the configuration takes effect even though the old one was persisted."""
    async with ac_world(
        tmp_path / "a.db", clock, static_tokens=("old-console", "new-console")
    ) as world:
        old = world.provider(auth_settings(static_token="old-console"))
        assert (await world.cache.get(old, "ac")).value == "old-console"
        new = world.provider(auth_settings(static_token="new-console"))
        assert (await world.cache.get(new, "ac")).value == "new-console"


@pytest.mark.parametrize("expires_format", ["datetime", "seconds"])
@pytest.mark.parametrize("scheme", ["legacy", "current"])
async def test_fifty_concurrent_requests_with_an_expired_token_refresh_once(
    tmp_path: Path, clock: FakeClock, scheme: str, expires_format: str
) -> None:
    """Single-flight: one signed refresh for 50 callers, and every request then succeeds."""
    async with ac_world(
        tmp_path / "a.db", clock, scheme=scheme, expires_format=expires_format
    ) as world:
        provider = world.provider(auth_settings(auth_scheme=scheme))
        await world.cache.install(provider, await world.web_grant(scheme), "ac")
        clock.advance(3601)
        client = world.client(provider)
        answers = await asyncio.gather(*(world.products(client) for _ in range(50)))
        assert {a.status for a in answers} == {200}
        assert world.refreshes() == 1
        assert world.emu.americommerce.stats.expired_token_requests == 0
        token = await world.cache.current(provider)
        assert token is not None and token.expires_at == clock.now() + timedelta(seconds=3600)
        events = [e.event for e in await world.store.token_events("ac")]
        assert events == ["refreshed", "issued"]


async def test_refreshes_ahead_of_expires(tmp_path: Path, clock: FakeClock) -> None:
    """Inside refresh_margin before `expires` the token is replaced before the store refuses it."""
    async with ac_world(tmp_path / "a.db", clock) as world:
        provider = world.provider(auth_settings(refresh_margin=300))
        await world.cache.install(provider, await world.web_grant(), "ac")
        client = world.client(provider)
        clock.advance(3600 - 301)
        await world.products(client)
        assert world.refreshes() == 0
        clock.advance(2)
        await world.products(client)
        assert world.refreshes() == 1
        assert world.emu.americommerce.stats.unauthorized == 0


@pytest.mark.parametrize("scheme", ["legacy", "current"])
async def test_single_use_rotation_is_persisted_and_a_restart_still_refreshes(
    tmp_path: Path, clock: FakeClock, scheme: str
) -> None:
    """The rotated pair is on disk before use; a new process on the same DB trades the new one in."""
    db = tmp_path / "a.db"
    async with ac_world(db, clock, scheme=scheme, refresh_tokens="single_use") as world:
        settings = auth_settings(auth_scheme=scheme)
        provider = world.provider(settings)
        first = await world.web_grant(scheme)
        await world.cache.install(provider, first, "ac")
        clock.advance(3601)
        assert (await world.products(world.client(provider))).status == 200
        stored = await world.store.load_token(provider.cache_key)
        assert stored is not None and stored.refresh_token not in (None, first.refresh_token)
        live = world.emu.americommerce.oauth.refresh_tokens
        assert live[stored.refresh_token].used is False and live[first.refresh_token].used is True  # type: ignore[index]

        clock.advance(3601)
        async with SqliteStore(db) as store2, ClientPool(FAST_HTTP, clock) as pool2:
            world2 = type(world)(
                world.emu, clock, store2, pool2, TokenCache(store2, clock), world.session
            )
            provider2 = world2.provider(settings)
            assert (await world2.products(world2.client(provider2))).status == 200
            again = await store2.load_token(provider2.cache_key)
        assert world.refreshes() == 2
        assert again is not None and again.refresh_token != stored.refresh_token


async def test_missing_expires_is_refreshed_when_the_store_refuses_it(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A grant of unknown lifetime is used until a 401, then refreshed once and the request retried."""
    async with ac_world(tmp_path / "a.db", clock) as world:
        provider = world.provider(auth_settings())
        grant = await world.web_grant()
        unknown = AccessToken(grant.value, None, clock.now(), refresh_token=grant.refresh_token)
        await world.cache.install(provider, unknown, "ac")
        clock.advance(3601)
        assert (await world.products(world.client(provider))).status == 200
        assert world.emu.americommerce.stats.expired_token_requests == 1
        assert world.refreshes() == 1


@pytest.mark.parametrize("body_format", ["json", "form"])
async def test_rejected_refresh_needs_reauth(
    tmp_path: Path, clock: FakeClock, body_format: str
) -> None:
    """A revoked grant: NeedsReauthError with the store's words (JSON or form) and the command to run."""
    async with ac_world(tmp_path / "a.db", clock) as world:
        provider = world.provider(auth_settings(body_format=body_format), source="shop")
        await world.cache.install(provider, await world.web_grant(), "shop")
        world.emu.americommerce.revoke_tokens(refresh_tokens=True)
        clock.advance(3601)
        with pytest.raises(NeedsReauthError) as caught:
            await world.products(world.client(provider, source="shop"))
        message = str(caught.value)
        assert "(HTTP 401 Unauthorized: Invalid refresh_token)" in message
        assert message.endswith("the grant is gone, run 'syncd auth shop'")
        events = await world.store.token_events("shop")
        assert (events[0].event, events[0].detail) == ("failed", message)
        assert not any(s in message for s in world.secrets())


async def test_a_scheme_mismatch_says_which_option_to_change(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A legacy-configured source on a current store: the 400 names auth_scheme."""
    async with ac_world(tmp_path / "a.db", clock, scheme="current") as world:
        provider = world.provider(auth_settings(auth_scheme="legacy"))
        await world.cache.install(provider, await world.web_grant("current"), "ac")
        clock.advance(3601)
        with pytest.raises(NeedsReauthError, match=r"HTTP 400 .*set auth_scheme = 'current'"):
            await world.products(world.client(provider))


async def test_a_store_outage_is_not_a_lost_grant(tmp_path: Path, clock: FakeClock) -> None:
    """5xx from the refresh endpoint after every retry: a transport error, the grant is kept."""
    async with ac_world(tmp_path / "a.db", clock) as world:
        provider = world.provider(auth_settings())
        grant = await world.web_grant()
        await world.cache.install(provider, grant, "ac")
        world.emu.americommerce.faults.add(Fault("status", target="token", times=None, status=503))
        clock.advance(3601)
        with pytest.raises(ServerError):
            await world.products(world.client(provider))
        assert not isinstance(ServerError("x"), AuthError)
        stored = await world.store.load_token(provider.cache_key)
        assert stored is not None and stored.refresh_token == grant.refresh_token
        world.emu.americommerce.faults.clear()
        assert (await world.products(world.client(provider))).status == 200


class ScriptedEndpoint:
    """A token endpoint that answers with a fixed status and body, echoing what it was sent."""

    def __init__(self, status: int, body: dict[str, object], *, form: bool = False) -> None:
        self.status = status
        self.body = body
        self.form = form
        self.sent: list[dict[str, str]] = []

    async def post_form(
        self, url: str, fields: Mapping[str, str], *, as_json: bool = False
    ) -> EndpointResponse:
        self.sent.append(dict(fields))
        body = {k: str(v).format(**fields) for k, v in self.body.items()}
        if self.form:
            return EndpointResponse(
                self.status, "application/x-www-form-urlencoded", urlencode(body).encode()
            )
        return EndpointResponse(
            self.status, "application/json; charset=utf-8", json.dumps(body).encode()
        )


def _expired(clock: FakeClock) -> AccessToken:
    return AccessToken(
        "old-access-value", clock.now(), clock.now(), refresh_token="old-refresh-value"
    )


@pytest.mark.parametrize("form", [False, True])
async def test_a_store_that_echoes_secrets_gets_fingerprints(clock: FakeClock, form: bool) -> None:
    """Details that repeat the refresh token show its fingerprint; ids (even '401') stay readable."""
    endpoint = ScriptedEndpoint(
        401,
        {
            "status_code": 401,
            "message": "Unauthorized",
            "details": "bad {refresh_token} for {client_id}",
        },
        form=form,
    )
    provider = AmeriCommerceTokenProvider(
        auth_settings(app_id="401"), "https://shop.example", endpoint, clock, source="shop"
    )
    with pytest.raises(NeedsReauthError) as caught:
        await provider.obtain(_expired(clock))
    message = str(caught.value)
    assert f"(HTTP 401 Unauthorized: bad {fingerprint('old-refresh-value')} for 401)" in message
    assert "old-refresh-value" not in message
    assert endpoint.sent == [
        {
            "client_id": "401",
            "refresh_token": "old-refresh-value",
            "signature": current_refresh_signature(SECRET, "old-refresh-value", "401"),
        }
    ]


async def test_legacy_refresh_sends_app_id_access_token_and_signature(clock: FakeClock) -> None:
    """Legacy body: {app_id, access_token, signature}; no refresh token on the wire."""
    endpoint = ScriptedEndpoint(
        200, {"access_token": "new", "refresh_token": "r2", "expires": "60"}
    )
    provider = AmeriCommerceTokenProvider(
        auth_settings(auth_scheme="legacy"), "https://shop.example", endpoint, clock
    )
    token = await provider.obtain(_expired(clock))
    assert endpoint.sent == [
        {
            "app_id": APP,
            "access_token": "old-access-value",
            "signature": legacy_refresh_signature(
                SECRET, "old-access-value", "old-refresh-value", APP
            ),
        }
    ]
    assert (token.value, token.refresh_token) == ("new", "r2")
    assert token.expires_at == clock.now() + timedelta(seconds=60)


async def test_an_answer_without_a_new_refresh_token_keeps_the_old_one(clock: FakeClock) -> None:
    """Current-edition refresh tokens are reusable: no rotation in the answer, keep what was traded in."""
    endpoint = ScriptedEndpoint(200, {"access_token": "new"})
    provider = AmeriCommerceTokenProvider(auth_settings(), "https://shop.example", endpoint, clock)
    with capture_logs() as logs:
        token = await provider.obtain(_expired(clock))
    assert (token.refresh_token, token.expires_at) == ("old-refresh-value", None)
    assert logs == []


@pytest.mark.parametrize(
    ("status", "body", "error", "text"),
    [
        (404, {"message": "Not Found"}, AuthError, "failed (HTTP 404 Not Found): check base_url"),
        (200, {"refresh_token": "x"}, AuthError, "answered HTTP 200 without an access_token"),
        (403, {"error": "forbidden"}, NeedsReauthError, "(HTTP 403 forbidden)"),
    ],
)
async def test_other_answers_are_named(
    clock: FakeClock, status: int, body: dict[str, object], error: type[Exception], text: str
) -> None:
    """A missing endpoint is not a lost grant; a 200 without a token is an error, not a crash."""
    provider = AmeriCommerceTokenProvider(
        auth_settings(), "https://shop.example", ScriptedEndpoint(status, body), clock
    )
    with pytest.raises(error) as caught:
        await provider.obtain(_expired(clock))
    assert type(caught.value) is error and text in str(caught.value)


async def test_unusable_expires_is_logged_and_the_token_kept(clock: FakeClock) -> None:
    """A refresh answer whose expires is in the past: token kept (no refresh storm), a warning logged."""
    endpoint = ScriptedEndpoint(200, {"access_token": "new", "expires": "2001-01-01T00:00:00Z"})
    provider = AmeriCommerceTokenProvider(
        auth_settings(), "https://shop.example", endpoint, clock, source="shop"
    )
    with capture_logs() as logs:
        token = await provider.obtain(_expired(clock))
    assert token.expires_at is None and token.is_fresh(clock.now(), 300)
    assert [(e["event"], e["source"]) for e in logs] == [("token.expiry_unknown", "shop")]


@pytest.mark.parametrize("outage_writes", [1, 3])
@pytest.mark.parametrize("scheme", ["legacy", "current"])
async def test_a_locked_database_after_a_single_use_rotation_keeps_the_grant(
    tmp_path: Path,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    scheme: str,
    outage_writes: int,
) -> None:
    """The store rotated the refresh token but the write failed: the new pair is kept and saved
    (on a retry, or at the next request once the database is free); nothing trades in the spent one."""
    async with ac_world(
        tmp_path / "a.db", clock, scheme=scheme, refresh_tokens="single_use"
    ) as world:
        provider = world.provider(auth_settings(auth_scheme=scheme))
        await world.cache.install(provider, await world.web_grant(scheme), "ac")
        clock.advance(3601)
        real, failures = world.store.save_token, [0]

        async def locked(key: str, token: TokenRecord, now: datetime) -> None:
            if failures[0] < outage_writes:
                failures[0] += 1
                raise StoreError("cannot save a token: database is locked")
            await real(key, token, now)

        monkeypatch.setattr(world.store, "save_token", locked)
        client = world.client(provider)
        if outage_writes >= 3:  # every retry of the first request fails: the run fails
            with pytest.raises(StoreError, match="could not be saved"):
                await world.products(client)
        assert (await world.products(client)).status == 200
        assert world.refreshes() == 1
        stored = await world.store.load_token(provider.cache_key)
        live = world.emu.americommerce.oauth.refresh_tokens
        assert stored is not None and stored.refresh_token is not None
        assert not live[stored.refresh_token].used
        clock.advance(3601)
        assert (await world.products(client)).status == 200
        assert world.refreshes() == 2
        assert [
            r.status for r in world.emu.americommerce.stats.requests_to("/api/oauth/refresh")
        ] == [200, 200]


@pytest.mark.parametrize("body_format", ["json", "form"])
@pytest.mark.parametrize("scheme", ["legacy", "current"])
async def test_syncd_posts_only_the_body_types_the_docs_allow(
    tmp_path: Path, clock: FakeClock, scheme: str, body_format: str
) -> None:
    """The emulator answers 415 to anything but JSON or form: syncd's login, exchange and refresh
    in either body_format get through it, and read the answer in the type they sent."""
    async with ac_world(tmp_path / "a.db", clock, scheme=scheme) as world:
        settings = auth_settings(auth_scheme=scheme, body_format=body_format)
        if scheme == "legacy":
            grant = await world.authorizer(settings).desktop(UserLogin(USER, USER_KEY))
        else:
            grant = await world.web_grant(scheme)
        provider = world.provider(settings)
        await world.cache.install(provider, grant, "ac")
        clock.advance(3601)
        assert (await world.products(world.client(provider))).status == 200
        log = world.emu.americommerce.stats.log
        oauth = [(r.path, r.status) for r in log if r.path.startswith("/api/oauth")]
        assert ("/api/oauth/refresh", 200) in oauth
        assert {status for _, status in oauth} <= {200, 302}, oauth  # never a 415


async def test_sources_asking_for_different_scopes_keep_separate_grants(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Same store and app, another scope: another grant; `syncd auth` of one leaves the other's alone."""
    async with ac_world(tmp_path / "a.db", clock) as world:
        narrow = world.provider(auth_settings(scope="read_catalog"), source="a")
        wide = world.provider(auth_settings(scope="read_catalog,read_orders"), source="b")
        same = world.provider(auth_settings(scope="read_catalog"), source="c")
        assert narrow.cache_key != wide.cache_key and narrow.cache_key == same.cache_key
        first = AccessToken("grant-a", None, clock.now(), refresh_token="refresh-a")
        second = AccessToken("grant-b", None, clock.now(), refresh_token="refresh-b")
        await world.cache.install(narrow, first, "a")
        await world.cache.install(wide, second, "b")
        assert (await world.cache.get(narrow, "a")).value == "grant-a"
        assert (await world.cache.get(same, "c")).value == "grant-a"
        stored = await world.store.load_token(narrow.cache_key)
        assert stored is not None and stored.access_token == "grant-a"


@pytest.mark.parametrize(("offset", "hour"), [(None, 3), (-300, 8), (120, 1)])
async def test_an_expires_without_offset_is_read_in_naive_time_offset(
    clock: FakeClock, offset: int | None, hour: int
) -> None:
    """`expires` with no UTC offset is in the source's naive_time_offset when set, else UTC
    (the same setting that reads products' naive datetimes)."""
    assert parse_expires("2026-01-01T03:00:00", NOW, naive_zone(offset)).at == datetime(
        2026, 1, 1, hour, tzinfo=UTC
    )
    endpoint = ScriptedEndpoint(200, {"access_token": "new", "expires": "2026-01-01T03:30:00"})
    provider = AmeriCommerceTokenProvider(
        auth_settings(), "https://shop.example", endpoint, clock, naive_time_offset=offset
    )
    token = await provider.obtain(_expired(clock))
    assert token.expires_at == datetime(2026, 1, 1, hour, 30, tzinfo=UTC)
