"""AmeriCommerce OAuth on the wire: field names per scheme, the token answer, and refusals in words.

Shared by the token provider (refresh) and the operator flows (`syncd auth`). Nothing here logs or
puts a secret into a message: refusals quote the store's `message`/`details` through the process's
redactor, with which the caller registered every secret it sent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from syncd.auth.provider import EndpointResponse
from syncd.auth.token import AccessToken
from syncd.config import AmeriCommerceAuthSettings
from syncd.errors import AuthError, ConfigError
from syncd.redaction import Redactor

AUTHORIZE_PATH = "/api/oauth"
ACCESS_TOKEN_PATH = "/api/oauth/access_token"  # noqa: S105 (a path)
REFRESH_PATH = "/api/oauth/refresh"


@dataclass(frozen=True, slots=True)
class SchemeNames:
    """What a scheme calls the app id and the redirect (`app_id`/`redirect_url` in 2014)."""

    app_id: str
    redirect: str

    @classmethod
    def of(cls, settings: AmeriCommerceAuthSettings) -> SchemeNames:
        """The names `settings.auth_scheme` sends."""
        if settings.auth_scheme == "legacy":
            return cls("app_id", "redirect_url")
        return cls("client_id", "redirect_uri")


@dataclass(frozen=True, slots=True)
class Expiry:
    """What an answer's `expires` said: when the token expires (None: unknown or never), and any doubt."""

    at: datetime | None
    problem: str | None = None


def app_secret(settings: AmeriCommerceAuthSettings) -> str:
    """The app secret every OAuth signature starts with (ConfigError if it is not configured)."""
    if settings.app_secret is None or not settings.app_id:
        raise ConfigError(["auth: app_id and app_secret are required for AmeriCommerce OAuth"])
    return settings.app_secret.get_secret_value()


def naive_zone(minutes: int | None) -> timezone | None:
    """The zone of a source's `naive_time_offset` (minutes east of UTC), None if not configured."""
    return None if minutes is None else timezone(timedelta(minutes=minutes))


def parse_expires(value: Any, now: datetime, naive_offset: timezone | None = None) -> Expiry:
    """Read `expires`, whose type the docs leave open: an ISO-8601 date-time or a number of seconds.

    A date-time without offset is in the store's zone: `naive_offset` (the source's
    `naive_time_offset`) if configured, else UTC. Unlike a product's `updated_at`, refused without
    it because a wrong zone would silently move the watermark, a wrong guess here costs at most an
    early refresh or one 401, so it is guessed. Missing means "no known expiry": the token is used
    until the store refuses it (401), which refreshes it. A value that cannot be read, or that is
    already past, is treated the same way and reported in `problem`, so that a store with a skewed
    clock or zone does not cause a refresh on every request.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return Expiry(None)
    if isinstance(value, bool):
        return Expiry(None, f"expires={value!r} is neither a date-time nor seconds")
    seconds: float | None = None
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                return Expiry(None, f"expires={text[:40]!r} is neither a date-time nor seconds")
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=naive_offset or UTC)
            at = moment
            if at <= now:
                return Expiry(
                    None, f"expires={text!r} is not in the future (now {now.isoformat()})"
                )
            return Expiry(at.astimezone(UTC))
    else:
        return Expiry(None, f"expires of type {type(value).__name__} is not understood")
    if not math.isfinite(seconds) or seconds <= 0:
        return Expiry(None, f"expires={value!r} is not a positive number of seconds")
    return Expiry(now + timedelta(seconds=seconds))


def read_grant(
    response: EndpointResponse,
    now: datetime,
    *,
    what: str,
    redactor: Redactor,
    keep_refresh: str | None = None,
    naive_offset: timezone | None = None,
) -> tuple[AccessToken, str | None]:
    """The token in a 200 answer to an exchange or refresh, and any doubt about its `expires`.

    The tokens are registered with `redactor` as soon as they are read. An answer without
    `refresh_token` keeps `keep_refresh` (the one traded in): current-edition refresh tokens are
    long-lived and reusable.
    """
    body = response.fields()
    access = body.get("access_token")
    refresh = body.get("refresh_token")
    redactor.register(
        access if isinstance(access, str) else None, refresh if isinstance(refresh, str) else None
    )
    if not isinstance(access, str) or not access:
        raise AuthError(f"{what} answered HTTP {response.status} without an access_token")
    if not isinstance(refresh, str) or not refresh:
        refresh = keep_refresh
    expiry = parse_expires(body.get("expires"), now, naive_offset)
    return AccessToken(access, expiry.at, now, refresh_token=refresh), expiry.problem


def refusal(response: EndpointResponse, redactor: Redactor) -> str:
    """`HTTP 401 Unauthorized: Invalid signature`, from a JSON or form-encoded error body.

    Quoted through `redactor`: a store that echoes a secret the caller registered before sending
    it gets it replaced by its fingerprint.
    """
    body = response.fields()
    parts = [str(body[k]).strip() for k in ("message", "details") if body.get(k)]
    if not parts:
        parts = [str(body[k]).strip() for k in ("error", "error_description") if body.get(k)]
    if not parts:
        size = len(response.body)
        parts.append(f"a {response.content_type or 'untyped'} body of {size} bytes")
    return f"HTTP {response.status} " + redactor.redact(": ".join(parts))[:300]
