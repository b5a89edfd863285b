"""AmeriCommerce OAuth: every flow's signature in both schemes, refresh modes, token lifetimes."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from urllib.parse import parse_qsl

import aiohttp
import pytest

from syncd.emulator import AmeriCommerceConfig
from tests.clocks import FakeClock
from tests.emulator.emulator_helpers import AcCaller, StartEmulator, sha256_hex

SECRET = "s3cret"
APP = "app-1"
SCOPE = "read_catalog"
REDIRECT = "https://App.Example.com/Callback"


def _config(**overrides: object) -> AmeriCommerceConfig:
    settings: dict[str, object] = {
        "products": 30,
        "app_id": APP,
        "app_secret": SECRET,
        "scope": SCOPE,
        "users": {"jane": "user-key-9"},
    }
    settings.update(overrides)
    return AmeriCommerceConfig(**settings)  # type: ignore[arg-type]


async def _caller(
    start: StartEmulator, session: aiohttp.ClientSession, **overrides: object
) -> AcCaller:
    return AcCaller(await start(americommerce=_config(**overrides)), session)


async def test_legacy_web_flow(
    start: StartEmulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Legacy: redirect with auth_id+code, exchange signed secret+code+app_id+scope+lower(redirect_url)."""
    ac = await _caller(start, session, scheme="legacy")
    location = await ac.authorize({"app_id": APP, "scope": SCOPE, "redirect_url": REDIRECT})
    assert str(location).lower().startswith(REDIRECT.lower() + "?")
    code, auth_id = location.query["code"], location.query["auth_id"]
    unlowered = sha256_hex(SECRET + code + APP + SCOPE + REDIRECT)
    refused = await ac.post(
        "/api/oauth/access_token", {"app_id": APP, "auth_id": auth_id, "signature": unlowered}
    )
    assert refused.status == 401
    assert refused.json()["status_code"] == 401
    signature = sha256_hex(SECRET + code + APP + SCOPE + "https://app.example.com/callback")
    answer = await ac.post(
        "/api/oauth/access_token", {"app_id": APP, "auth_id": auth_id, "signature": signature}
    )
    assert answer.status == 200
    body = answer.json()
    assert set(body) == {"access_token", "refresh_token", "expires"}
    expires = datetime.fromisoformat(body["expires"])
    assert expires == clock.now() + timedelta(seconds=3600)
    assert expires.utcoffset() == timedelta(hours=-5)
    again = await ac.post(
        "/api/oauth/access_token", {"app_id": APP, "auth_id": auth_id, "signature": signature}
    )
    assert again.status == 401, "an auth_id is good for one exchange"


async def test_legacy_scheme_refuses_current_names(
    start: StartEmulator, session: aiohttp.ClientSession
) -> None:
    """A legacy store knows app_id/redirect_url only."""
    ac = await _caller(start, session, scheme="legacy")
    async with session.get(
        ac.emu.url + "/api/oauth",
        params={"client_id": APP, "scope": SCOPE, "redirect_uri": REDIRECT},
        allow_redirects=False,
    ) as response:
        assert response.status == 400


async def test_current_web_flow(start: StartEmulator, session: aiohttp.ClientSession) -> None:
    """Current: client_id/redirect_uri, exchange signed secret+code+client_id+scope+lower(redirect_uri)."""
    ac = await _caller(start, session)
    location = await ac.authorize({"client_id": APP, "scope": SCOPE, "redirect_uri": REDIRECT})
    code, auth_id = location.query["code"], location.query["auth_id"]
    signature = sha256_hex(SECRET + code + APP + SCOPE + "https://app.example.com/callback")
    legacy_names = await ac.post(
        "/api/oauth/access_token", {"app_id": APP, "auth_id": auth_id, "signature": signature}
    )
    assert legacy_names.status == 400
    for padded in (f" {signature}", f"{signature}\n", f"{signature[:-1]} "):
        refused = await ac.post(
            "/api/oauth/access_token",
            {"client_id": APP, "auth_id": auth_id, "signature": padded},
        )
        assert (refused.status, refused.json()["details"]) == (401, "Invalid signature"), padded
    answer = await ac.post(
        "/api/oauth/access_token",
        {"client_id": APP, "auth_id": auth_id, "signature": signature.upper()},
    )
    assert answer.status == 200, "hex digits carry no case; whitespace is refused above"
    assert (await ac.get("/api/v1/products?count=1", answer.json()["access_token"])).status == 200


async def test_web_flow_errors_redirect_back(
    start: StartEmulator, session: aiohttp.ClientSession
) -> None:
    """A denied grant or an unknown app comes back as error, error_reason, error_description."""
    ac = await _caller(start, session, deny_web_grant=True)
    denied = await ac.authorize({"client_id": APP, "scope": SCOPE, "redirect_uri": REDIRECT})
    assert denied.query["error"] == "access_denied"
    assert {"error_reason", "error_description"} <= set(denied.query)
    assert "code" not in denied.query
    unknown = await ac.authorize({"client_id": "nope", "scope": SCOPE, "redirect_uri": REDIRECT})
    assert unknown.query["error"] == "invalid_request"
    too_much = await ac.authorize(
        {"client_id": APP, "scope": "read_catalog,orders", "redirect_uri": REDIRECT}
    )
    assert too_much.query["error"] == "invalid_scope"


@pytest.mark.parametrize("mode", ["prose", "summary"])
async def test_legacy_desktop_flow(
    start: StartEmulator, session: aiohttp.ClientSession, mode: str
) -> None:
    """Desktop: login signed with the user key, exchange signed exactly as configured, form in and out."""
    ac = await _caller(start, session, scheme="legacy", desktop_exchange_signature=mode)
    redirect = "MyDesktopApp"
    login = {
        "app_id": APP,
        "scope": SCOPE,
        "redirect_url": redirect,
        "username": "jane",
        "signature": sha256_hex(SECRET + "jane" + "user-key-9" + APP + SCOPE + redirect),
    }
    bad = await ac.post(
        "/api/oauth",
        {**login, "signature": sha256_hex(SECRET + "jane" + "wrong" + APP + SCOPE + redirect)},
        form=True,
    )
    assert bad.status == 401
    assert bad.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert dict(parse_qsl(bad.text))["status_code"] == "401"
    answer = await ac.post("/api/oauth", login, form=True)
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    handshake = dict(parse_qsl(answer.text))
    code, auth_id = handshake["code"], handshake["auth_id"]
    prose = sha256_hex(SECRET + code + APP + SCOPE + redirect)
    summary = sha256_hex(SECRET + "jane" + code + APP + SCOPE + redirect)
    right, wrong = (prose, summary) if mode == "prose" else (summary, prose)
    refused = await ac.post(
        "/api/oauth/access_token",
        {"app_id": APP, "auth_id": auth_id, "signature": wrong},
        form=True,
    )
    assert refused.status == 401
    accepted = await ac.post(
        "/api/oauth/access_token",
        {"app_id": APP, "auth_id": auth_id, "signature": right},
        form=True,
    )
    assert accepted.status == 200
    assert set(dict(parse_qsl(accepted.text))) == {"access_token", "refresh_token", "expires"}


async def test_current_scheme_has_no_desktop_flow(
    start: StartEmulator, session: aiohttp.ClientSession
) -> None:
    """POST /api/oauth does not exist for a current-scheme store."""
    ac = await _caller(start, session)
    answer = await ac.post("/api/oauth", {"app_id": APP, "username": "jane"})
    assert answer.status == 404


async def test_legacy_refresh_trades_the_access_token_in(
    start: StartEmulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Legacy refresh: {app_id, access_token, SHA256(secret+access_token+refresh_token+app_id)}."""
    ac = await _caller(start, session, scheme="legacy")
    location = await ac.authorize({"app_id": APP, "scope": SCOPE, "redirect_url": REDIRECT})
    signature = sha256_hex(SECRET + location.query["code"] + APP + SCOPE + REDIRECT.lower())
    tokens = (
        await ac.post(
            "/api/oauth/access_token",
            {"app_id": APP, "auth_id": location.query["auth_id"], "signature": signature},
        )
    ).json()
    access, refresh = tokens["access_token"], tokens["refresh_token"]
    clock.advance(3600)
    assert (await ac.get("/api/v1/products?count=1", access)).status == 401
    assert ac.emu.americommerce.stats.expired_token_requests == 1
    wrong = await ac.post(
        "/api/oauth/refresh",
        {"app_id": APP, "access_token": access, "signature": sha256_hex(SECRET + refresh + APP)},
    )
    assert wrong.status == 401
    answer = await ac.post(
        "/api/oauth/refresh",
        {
            "app_id": APP,
            "access_token": access,
            "signature": sha256_hex(SECRET + access + refresh + APP),
        },
    )
    assert answer.status == 200
    renewed = answer.json()
    assert renewed["access_token"] != access and renewed["refresh_token"] != refresh
    assert (await ac.get("/api/v1/products?count=1", renewed["access_token"])).status == 200
    # Refresh tokens are reusable here, but the access token was traded in: not a second time.
    again = await ac.post(
        "/api/oauth/refresh",
        {
            "app_id": APP,
            "access_token": access,
            "signature": sha256_hex(SECRET + access + refresh + APP),
        },
    )
    assert (again.status, again.json()["details"]) == (
        401,
        "The access_token has already been refreshed",
    )
    new_access, new_refresh = renewed["access_token"], renewed["refresh_token"]
    chained = await ac.post(
        "/api/oauth/refresh",
        {
            "app_id": APP,
            "access_token": new_access,
            "signature": sha256_hex(SECRET + new_access + new_refresh + APP),
        },
    )
    assert chained.status == 200


@pytest.mark.parametrize("mode", ["reusable", "single_use"])
async def test_current_refresh_modes(
    start: StartEmulator, session: aiohttp.ClientSession, mode: str
) -> None:
    """Current refresh: {client_id, refresh_token, SHA256(secret+refresh_token+client_id)}; reuse per mode;
    a wrong signature is a 401 that spends nothing."""
    ac = await _caller(start, session, refresh_tokens=mode)
    refresh = (await ac.web_token())["refresh_token"]
    body = {
        "client_id": APP,
        "refresh_token": refresh,
        "signature": sha256_hex(SECRET + refresh + APP),
    }
    for wrong in (
        sha256_hex("not-the-secret" + refresh + APP),
        sha256_hex(SECRET + APP + refresh),
        sha256_hex(SECRET + refresh + APP + SCOPE),
    ):
        refused = await ac.post("/api/oauth/refresh", {**body, "signature": wrong})
        assert (refused.status, refused.json()["details"]) == (401, "Invalid signature")
    first = await ac.post("/api/oauth/refresh", body)
    assert first.status == 200
    assert first.json()["refresh_token"] != refresh, "every refresh issues a new refresh token"
    second = await ac.post("/api/oauth/refresh", body)
    assert second.status == (200 if mode == "reusable" else 401)
    rotated = first.json()["refresh_token"]
    chained = {
        "client_id": APP,
        "refresh_token": rotated,
        "signature": sha256_hex(SECRET + rotated + APP),
    }
    assert (await ac.post("/api/oauth/refresh", chained)).status == 200


async def test_refresh_after_revocation(
    start: StartEmulator, session: aiohttp.ClientSession
) -> None:
    """revoke_tokens() kills access tokens; refresh still works unless refresh tokens are revoked too."""
    ac = await _caller(start, session)
    tokens = await ac.web_token()
    emulator = ac.emu.americommerce
    emulator.revoke_tokens()
    assert (await ac.get("/api/v1/products?count=1", tokens["access_token"])).status == 401
    refresh = tokens["refresh_token"]
    body = {
        "client_id": APP,
        "refresh_token": refresh,
        "signature": sha256_hex(SECRET + refresh + APP),
    }
    assert (await ac.post("/api/oauth/refresh", body)).status == 200
    emulator.revoke_tokens(refresh_tokens=True)
    assert (await ac.post("/api/oauth/refresh", body)).status == 401


async def test_expires_in_seconds_and_errors_in_json(
    start: StartEmulator, session: aiohttp.ClientSession
) -> None:
    """expires_format='seconds' gives the lifetime; JSON requests get JSON errors."""
    ac = await _caller(start, session, expires_format="seconds", token_lifetime=900)
    assert (await ac.web_token())["expires"] == 900
    missing = await ac.post("/api/oauth/access_token", {"client_id": APP})
    assert missing.status == 400
    assert missing.json()["message"] == "Bad Request"


async def test_handshake_codes_expire(
    start: StartEmulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """An auth_id older than code_lifetime cannot be exchanged."""
    ac = await _caller(start, session, code_lifetime=60)
    location = await ac.authorize({"client_id": APP, "scope": SCOPE, "redirect_uri": REDIRECT})
    clock.advance(61)
    signature = sha256_hex(SECRET + location.query["code"] + APP + SCOPE + REDIRECT.lower())
    answer = await ac.post(
        "/api/oauth/access_token",
        {"client_id": APP, "auth_id": location.query["auth_id"], "signature": signature},
    )
    assert answer.status == 401


async def test_static_and_no_expiry_tokens_do_not_expire(
    start: StartEmulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Admin-console tokens and no_expiry grants outlive any clock; static ones can be revoked."""
    ac = await _caller(
        start, session, static_tokens=("console-token",), scope="read_catalog,no_expiry"
    )
    cfg = ac.emu.config.americommerce
    location = await ac.authorize({"client_id": APP, "scope": cfg.scope, "redirect_uri": REDIRECT})
    signature = sha256_hex(SECRET + location.query["code"] + APP + cfg.scope + REDIRECT.lower())
    lasting = (
        await ac.post(
            "/api/oauth/access_token",
            {"client_id": APP, "auth_id": location.query["auth_id"], "signature": signature},
        )
    ).json()
    assert lasting["expires"] is None and lasting["refresh_token"] is None
    clock.advance(10 * 365 * 86400)
    assert (await ac.get("/api/v1/products?count=1", "console-token")).status == 200
    assert (await ac.get("/api/v1/products?count=1", lasting["access_token"])).status == 200
    ac.emu.americommerce.revoke_tokens(static_tokens=True)
    assert (await ac.get("/api/v1/products?count=1", "console-token")).status == 401


@pytest.mark.parametrize("path", ["/api/oauth", "/api/oauth/access_token", "/api/oauth/refresh"])
@pytest.mark.parametrize(
    "content_type", ["text/plain", None, "multipart/form-data; boundary=x", "application/xml"]
)
async def test_only_json_and_form_bodies_are_read(
    start: StartEmulator, session: aiohttp.ClientSession, path: str, content_type: str | None
) -> None:
    """The docs allow JSON or form bodies only: another type, or none, is a 415 in the API's JSON."""
    ac = await _caller(start, session, scheme="legacy")
    body = json.dumps({"app_id": APP, "auth_id": "a", "access_token": "t", "signature": "s"})
    headers = {} if content_type is None else {"Content-Type": content_type}
    async with session.post(
        ac.emu.url + path, data=body.encode(), headers=headers, skip_auto_headers=["Content-Type"]
    ) as response:
        assert response.status == 415
        assert response.content_type == "application/json"
        answer = await response.json()
    assert (answer["status_code"], answer["message"]) == (415, "Unsupported Media Type")
    assert "application/json or application/x-www-form-urlencoded" in answer["details"]


async def test_json_with_a_charset_is_json(
    start: StartEmulator, session: aiohttp.ClientSession
) -> None:
    """`application/json; charset=utf-8` is still JSON: read, and answered in JSON."""
    ac = await _caller(start, session)
    async with session.post(
        ac.emu.url + "/api/oauth/access_token",
        data=json.dumps({"client_id": APP}).encode(),
        headers={"Content-Type": "application/json; charset=utf-8"},
    ) as response:
        assert response.status == 400
        assert (await response.json())["details"] == "auth_id is required"
