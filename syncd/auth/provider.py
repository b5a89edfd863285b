"""What a platform's token provider does, and the transport it is given to reach a token endpoint."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qsl

from syncd.auth.token import AccessToken


@dataclass(frozen=True, slots=True)
class EndpointResponse:
    """A token endpoint's answer, undecoded."""

    status: int
    content_type: str
    body: bytes

    def fields(self) -> dict[str, Any]:
        """The body as a dict, decoded by its content type (JSON or form); {} if it is neither."""
        text = self.body.decode("utf-8", errors="replace")
        if "x-www-form-urlencoded" in self.content_type:
            return dict(parse_qsl(text))
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: nested too deeply to read
            return {}
        return data if isinstance(data, dict) else {}


class TokenEndpoint(Protocol):
    """Posts credentials to a token endpoint; implemented by the http layer (with its retries)."""

    async def post_form(
        self, url: str, fields: Mapping[str, str], *, as_json: bool = False
    ) -> EndpointResponse:
        """POST `fields` form-encoded (or as JSON) and return the answer whatever its status."""
        ...


class TokenProvider(Protocol):
    """Obtains tokens for one credential; the `TokenCache` decides when to call it."""

    @property
    def cache_key(self) -> str:
        """Identifies the credential: providers with the same key share tokens."""
        ...

    @property
    def refresh_margin(self) -> float:
        """Seconds before expiry at which a token stops being handed out."""
        ...

    async def obtain(self, previous: AccessToken | None) -> AccessToken:
        """A new token; `previous` (possibly expired) lets refresh-token flows trade it in."""
        ...

    def auth_headers(self, token: AccessToken) -> dict[str, str]:
        """The headers that authenticate an API request with `token`."""
        ...


@runtime_checkable
class RequestSigner(Protocol):
    """A provider whose credential covers the request itself (OAuth 1.0a): the client asks it
    for each request's headers instead of calling `auth_headers`."""

    def request_headers(
        self,
        token: AccessToken,
        method: str,
        url: str,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """The headers that authenticate `method url?params` with `token`."""
        ...


@runtime_checkable
class SpendsRefreshTokens(Protocol):
    """A provider whose refresh may consume what it presents (single-use refresh tokens): a
    refresh that was sent and never answered must not be sent again, by any replica."""

    def spends_refresh_token(self) -> bool:
        """True when `obtain` presents a refresh token the server may accept only once."""
        ...
