"""AmeriCommerce's signature-based OAuth, in the store's one scheme ("legacy" 2014 or "current").

Legacy (AmeriCommerce/rest-api authentication.md, 2014): `app_id`/`redirect_url`, a web and a
desktop flow, refresh signed `SHA256(secret + access_token + refresh_token + app_id)`.
Current (docs/authentication.md, Cart.com edition): `client_id`/`redirect_uri`, no desktop flow,
refresh signed `SHA256(secret + refresh_token + client_id)`; its web exchange keeps the legacy shape,
`SHA256(secret + code + client_id + scope + redirect_uri.lower())` (step 5 of that page).
Bodies are JSON or form-encoded, the two types the docs allow (anything else is a 415), and
errors come back in the content type of the request. Signatures must be exactly 64 hex digits.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlencode

from aiohttp import web

from syncd.clock import Clock
from syncd.emulator.config import AmeriCommerceConfig
from syncd.emulator.responses import dumps, form_response, json_response
from syncd.emulator.timefmt import store_format, to_ms

TokenState = Literal["valid", "expired", "revoked", "unknown"]
Encoding = Literal["json", "form"]
_JSON = "application/json"
_FORM = "application/x-www-form-urlencoded"
_HEX = re.compile(r"[0-9a-fA-F]+")
_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    415: "Unsupported Media Type",
}


@dataclass(slots=True)
class AcAccessToken:
    """An access token and the grant behind it."""

    value: str
    scope: str
    expires_at: datetime | None
    refresh_token: str | None
    active: bool = True
    traded_in: bool = False  # a legacy refresh has exchanged it for a new one


@dataclass(slots=True)
class AcRefreshToken:
    """A refresh token; `used` matters only when refresh tokens are single-use."""

    value: str
    scope: str
    used: bool = False
    revoked: bool = False
    presented: int = 0  # refresh requests that named it (signed or not, accepted or not)


@dataclass(frozen=True, slots=True)
class _Handshake:
    auth_id: str
    code: str
    scope: str
    redirect: str
    username: str | None
    started: datetime


def sha256_hex(*parts: str) -> str:
    """The hex SHA-256 of the concatenated parts."""
    return hashlib.sha256("".join(parts).encode()).hexdigest()


def scopes_of(scope: str) -> set[str]:
    """The scope names in a comma- or space-separated list."""
    return {s for s in re.split(r"[,\s]+", scope) if s}


class AmeriCommerceOAuth:
    """Handshakes, access tokens and refresh tokens for the one configured app."""

    def __init__(self, config: AmeriCommerceConfig, clock: Clock, rng: random.Random) -> None:
        self._config = config
        self._clock = clock
        self._rng = rng
        self._legacy = config.scheme == "legacy"
        self._id_field = "app_id" if self._legacy else "client_id"
        self._redirect_field = "redirect_url" if self._legacy else "redirect_uri"
        self.handshakes: dict[str, _Handshake] = {}
        self.access_tokens: dict[str, AcAccessToken] = {}
        self.refresh_tokens: dict[str, AcRefreshToken] = {}
        self.revoked_static: set[str] = set()

    # -- what the API side asks ----------------------------------------------------------------

    def check(self, value: str) -> tuple[TokenState, str]:
        """Whether an X-AC-Auth-Token may be used, and its scope."""
        if value in self._config.static_tokens:
            if value in self.revoked_static:
                return "revoked", ""
            return "valid", self._config.scope
        token = self.access_tokens.get(value)
        if token is None:
            return "unknown", ""
        if not token.active:
            return "revoked", token.scope
        if token.expires_at is not None and self._clock.now() >= token.expires_at:
            return "expired", token.scope
        return "valid", token.scope

    def presentations(self) -> dict[str, int]:
        """How many refresh requests named each refresh token ever issued (0: never presented);
        with single-use refresh tokens, a client must never present one twice."""
        return {value: token.presented for value, token in self.refresh_tokens.items()}

    def revoke(self, *, refresh_tokens: bool = False, static_tokens: bool = False) -> None:
        """Invalidate every access token (and refresh or admin-console tokens if asked)."""
        for token in self.access_tokens.values():
            token.active = False
        if refresh_tokens:
            for refresh in self.refresh_tokens.values():
                refresh.revoked = True
        if static_tokens:
            self.revoked_static.update(self._config.static_tokens)

    # -- GET /api/oauth: the web flow's redirect -----------------------------------------------

    async def authorize(self, request: web.Request) -> web.Response:
        """Simulate the admin's login and grant, then redirect back with auth_id and code."""
        q = request.query
        redirect = q.get(self._redirect_field, "")
        if not redirect:
            return _error("json", 400, f"{self._redirect_field} is required")
        scope = q.get("scope", "")
        if q.get(self._id_field) != self._config.app_id:
            return _redirect(redirect, error="invalid_request", error_reason="invalid_app",
                             error_description="The application could not be found.")  # fmt: skip
        if not scope or not scopes_of(scope) <= scopes_of(self._config.scope):
            return _redirect(redirect, error="invalid_scope", error_reason="invalid_scope",
                             error_description="The app may not request this scope.")  # fmt: skip
        if self._config.deny_web_grant:
            return _redirect(redirect, error="access_denied", error_reason="user_denied",
                             error_description="The user denied your request.")  # fmt: skip
        handshake = self._handshake(scope, redirect, None)
        return _redirect(redirect, auth_id=handshake.auth_id, code=handshake.code)

    # -- POST /api/oauth: the legacy desktop flow's login --------------------------------------

    async def desktop(self, request: web.Request) -> web.Response:
        """Log a user in by signature over their user API key (legacy scheme only)."""
        if not self._legacy:
            return _error(_encoding(request), 404, "The desktop flow is not available.")
        fields, encoding = await _read(request)
        missing = _missing(fields, "app_id", "scope", "redirect_url", "username", "signature")
        if missing:
            return _error(encoding, 400, f"{missing} is required")
        if fields["app_id"] != self._config.app_id:
            return _error(encoding, 401, "Invalid app_id")
        key = self._config.users.get(fields["username"])
        expected = sha256_hex(
            self._config.app_secret, fields["username"], key or "", fields["app_id"],
            fields["scope"], fields["redirect_url"],
        )  # fmt: skip
        if key is None or not _same(expected, fields["signature"]):
            return _error(encoding, 401, "Invalid signature")
        if not scopes_of(fields["scope"]) <= scopes_of(self._config.scope):
            return _error(encoding, 400, "Invalid scope")
        handshake = self._handshake(fields["scope"], fields["redirect_url"], fields["username"])
        return _answer(encoding, {"auth_id": handshake.auth_id, "code": handshake.code})

    # -- POST /api/oauth/access_token ----------------------------------------------------------

    async def access_token(self, request: web.Request) -> web.Response:
        """Trade a signed handshake for an access and a refresh token."""
        fields, encoding = await _read(request)
        missing = _missing(fields, self._id_field, "auth_id", "signature")
        if missing:
            return _error(encoding, 400, f"{missing} is required")
        if fields[self._id_field] != self._config.app_id:
            return _error(encoding, 401, f"Invalid {self._id_field}")
        handshake = self.handshakes.get(fields["auth_id"])
        lifetime = timedelta(seconds=self._config.code_lifetime)
        if handshake is None or self._clock.now() - handshake.started > lifetime:
            return _error(encoding, 401, "Invalid or expired auth_id")
        if not _same(self._exchange_signature(handshake), fields["signature"]):
            return _error(encoding, 401, "Invalid signature")
        del self.handshakes[handshake.auth_id]
        return _answer(encoding, self._issue(handshake.scope))

    def _exchange_signature(self, h: _Handshake) -> str:
        cfg = self._config
        if h.username is None:
            return sha256_hex(cfg.app_secret, h.code, cfg.app_id, h.scope, h.redirect.lower())
        if cfg.desktop_exchange_signature == "summary":
            return sha256_hex(cfg.app_secret, h.username, h.code, cfg.app_id, h.scope, h.redirect)
        return sha256_hex(cfg.app_secret, h.code, cfg.app_id, h.scope, h.redirect)

    # -- POST /api/oauth/refresh ---------------------------------------------------------------

    async def refresh(self, request: web.Request) -> web.Response:
        """A new access token (and refresh token) for a signed refresh request."""
        fields, encoding = await _read(request)
        cfg = self._config
        if self._legacy:
            missing = _missing(fields, "app_id", "access_token", "signature")
        else:
            missing = _missing(fields, "client_id", "refresh_token", "signature")
        if missing:
            return _error(encoding, 400, f"{missing} is required")
        if fields[self._id_field] != cfg.app_id:
            return _error(encoding, 401, f"Invalid {self._id_field}")
        old: AcAccessToken | None = None
        if self._legacy:
            old = self.access_tokens.get(fields["access_token"])
            refresh_value = old.refresh_token if old is not None else None
            if refresh_value is None:
                return _error(encoding, 401, "Invalid access_token")
            if old is not None and old.traded_in:
                # A legacy refresh trades the access token in: it cannot be traded twice, even
                # when the refresh token behind it is reusable.
                return _error(encoding, 401, "The access_token has already been refreshed")
            expected = sha256_hex(cfg.app_secret, fields["access_token"], refresh_value, cfg.app_id)
        else:
            refresh_value = fields["refresh_token"]
            expected = sha256_hex(cfg.app_secret, refresh_value, cfg.app_id)
        refresh = self.refresh_tokens.get(refresh_value)
        if refresh is not None:
            refresh.presented += 1
        if refresh is None or refresh.revoked:
            return _error(encoding, 401, "Invalid refresh_token")
        if not _same(expected, fields["signature"]):
            return _error(encoding, 401, "Invalid signature")
        if cfg.refresh_tokens == "single_use":
            if refresh.used:
                return _error(encoding, 401, "The refresh_token has already been used")
            refresh.used = True
        if old is not None:
            old.active = False  # the legacy flow trades the old access token in
            old.traded_in = True
        return _answer(encoding, self._issue(refresh.scope))

    # -- internals -----------------------------------------------------------------------------

    def _handshake(self, scope: str, redirect: str, username: str | None) -> _Handshake:
        auth_id = self._opaque(16)
        handshake = _Handshake(
            auth_id, self._opaque(20), scope, redirect, username, self._clock.now()
        )
        self.handshakes[auth_id] = handshake
        return handshake

    def _opaque(self, size: int) -> str:
        return self._rng.randbytes(size).hex()

    def _issue(self, scope: str) -> dict[str, Any]:
        cfg = self._config
        now = self._clock.now()
        lasting = "no_expiry" in scopes_of(scope)
        expires_at = None if lasting else now + timedelta(seconds=cfg.token_lifetime)
        refresh_value = None if lasting else self._opaque(24)
        access = AcAccessToken(self._opaque(16), scope, expires_at, refresh_value)
        self.access_tokens[access.value] = access
        if refresh_value is not None:
            self.refresh_tokens[refresh_value] = AcRefreshToken(refresh_value, scope)
        expires: Any = None
        if expires_at is not None:
            if cfg.expires_format == "seconds":
                expires = cfg.token_lifetime
            else:
                expires = store_format(to_ms(expires_at), cfg.utc_offset_minutes)
        return {"access_token": access.value, "refresh_token": refresh_value, "expires": expires}


def _same(expected: str, given: str) -> bool:
    # Hex digits carry no case (a .NET store's own digests are often upper case), so the case is
    # ignored; anything else, surrounding spaces included, is not the hex string the docs ask for.
    if len(given) != len(expected) or not _HEX.fullmatch(given):
        return False
    return hmac.compare_digest(expected, given.lower())


def _missing(fields: dict[str, str], *names: str) -> str | None:
    return next((name for name in names if not fields.get(name)), None)


def _encoding(request: web.Request) -> Encoding:
    """How to answer `request`: form-encoded if it was, else JSON (the API's own format)."""
    return "form" if request.content_type == _FORM else "json"


async def _read(request: web.Request) -> tuple[dict[str, str], Encoding]:
    """The body's fields and how to answer; a 415 (raised) for a type the docs do not allow.

    The docs allow `application/json` and `application/x-www-form-urlencoded` only; a body with
    another type, or none, is refused rather than guessed at.
    """
    if request.content_type == _FORM:
        form = await request.post()
        return {k: str(v) for k, v in form.items()}, "form"
    if request.content_type != _JSON:
        sent = request.headers.get("Content-Type")
        what = f"media type {sent[:60]!r}" if sent else "a body without a Content-Type"
        details = f"The request's {what} is not supported: use {_JSON} or {_FORM}"
        raise web.HTTPUnsupportedMediaType(
            text=dumps(_error_body(415, details)).decode(), content_type=_JSON
        )
    raw = await request.read()
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return {}, "json"
    return {k: "" if v is None else str(v) for k, v in data.items()}, "json"


def _answer(encoding: Encoding, body: dict[str, Any]) -> web.Response:
    if encoding == "form":
        return form_response(200, body)
    return json_response(200, body)


def _error_body(status: int, details: str) -> dict[str, Any]:
    """The API's error shape: `{status_code, message, details}`."""
    return {"status_code": status, "message": _REASONS.get(status, "Error"), "details": details}


def _error(encoding: Encoding, status: int, details: str) -> web.Response:
    body = _error_body(status, details)
    if encoding == "form":
        return form_response(status, body)
    return json_response(status, body)


def _redirect(target: str, **params: str) -> web.Response:
    # Appended to the caller's URL as given: its exact spelling matters for the signature.
    joiner = "&" if "?" in target else "?"
    return web.Response(status=302, headers={"Location": target + joiner + urlencode(params)})
