"""Adobe IMS `POST /ims/token/v3`: the OAuth Server-to-Server (client_credentials) grant.

Refusals are HTTP 400 with `{"error", "error_description"}`; the texts for a bad client id or
secret ("invalid client_id parameter", "invalid client_secret parameter") are what Adobe's own
client code matches on. There is no refresh token: a client asks for a new access token.
"""

from __future__ import annotations

import base64
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from aiohttp import web

from syncd.clock import Clock
from syncd.emulator.config import AdobeConfig
from syncd.emulator.responses import json_response

TokenState = Literal["valid", "expired", "revoked", "unknown"]


@dataclass(slots=True)
class IssuedToken:
    """An access token the emulator minted."""

    value: str
    issued_at: datetime
    expires_at: datetime
    scopes: tuple[str, ...]
    revoked: bool = False


class ImsService:
    """Mints and checks bearer tokens for the one configured technical account."""

    def __init__(self, config: AdobeConfig, clock: Clock, rng: random.Random) -> None:
        self._config = config
        self._clock = clock
        self._rng = rng
        self.tokens: dict[str, IssuedToken] = {}
        self.client_disabled = False

    def state(self, value: str) -> TokenState:
        """Whether a bearer token may be used now."""
        token = self.tokens.get(value)
        if token is None:
            return "unknown"
        if token.revoked:
            return "revoked"
        if self._clock.now() >= token.expires_at:
            return "expired"
        return "valid"

    def revoke_all(self) -> None:
        """Invalidate every token issued so far."""
        for token in self.tokens.values():
            token.revoked = True

    async def token(self, request: web.Request) -> web.Response:
        """The token endpoint."""
        form: dict[str, str] = {}
        if request.content_type == "application/x-www-form-urlencoded":
            form = {k: str(v) for k, v in (await request.post()).items()}
        client_id = form.get("client_id") or request.query.get("client_id", "")
        cfg = self._config
        if not client_id:
            return _refuse("invalid_request", "missing client_id parameter")
        if client_id != cfg.client_id:
            return _refuse("invalid_client", "invalid client_id parameter")
        if self.client_disabled:
            return _refuse("invalid_client", "client is disabled")
        grant = form.get("grant_type", "")
        if not grant:
            return _refuse("invalid_request", "missing grant_type parameter")
        if grant != "client_credentials":
            return _refuse("unsupported_grant_type", f"unsupported grant_type {grant}")
        secret = form.get("client_secret", "")
        if not secret:
            return _refuse("invalid_request", "missing client_secret parameter")
        if secret != cfg.client_secret:
            return _refuse("invalid_client", "invalid client_secret parameter")
        scopes = tuple(s for s in form.get("scope", "").replace(" ", ",").split(",") if s)
        if cfg.required_scope not in scopes:
            return _refuse("invalid_scope", f"invalid scope: {cfg.required_scope} is required")
        now = self._clock.now()
        value = self._mint()
        self.tokens[value] = IssuedToken(
            value, now, now + timedelta(seconds=cfg.token_lifetime), scopes
        )
        return json_response(
            200,
            {"access_token": value, "token_type": "bearer", "expires_in": cfg.token_lifetime},
        )

    def _mint(self) -> str:
        # Shaped like the JWTs IMS hands out, but opaque: nothing in it is meant to be decoded.
        body = base64.urlsafe_b64encode(self._rng.randbytes(96)).rstrip(b"=").decode()
        sig = base64.urlsafe_b64encode(self._rng.randbytes(32)).rstrip(b"=").decode()
        return f"eyJhbGciOiJSUzI1NiIsIng1dSI6ImltcyJ9.{body}.{sig}"


def _refuse(error: str, description: str) -> web.Response:
    return json_response(400, {"error": error, "error_description": description})
