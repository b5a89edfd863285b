"""A Magento integration's credentials: its access token as a bearer token, or OAuth 1.0a signing.

Both are what Magento Open Source, on-premises and cloud-infrastructure (PaaS) stores hand out
under System > Extensions > Integrations. Neither expires, so `obtain` never calls the store.

The cached "token" of these kinds holds a fingerprint of the access token, not the token: the
token cache persists what it caches, and a credential that lives in the configuration has no
reason to be copied into the database. The headers are built from the settings instead.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping
from typing import Any, cast
from urllib.parse import urlencode

from oauthlib.oauth1 import SIGNATURE_HMAC_SHA1, SIGNATURE_HMAC_SHA256, Client

from syncd.auth.token import AccessToken, fingerprint
from syncd.clock import Clock
from syncd.config import IntegrationBearerAuthSettings, IntegrationOAuth1AuthSettings

_METHODS = {"HMAC-SHA256": SIGNATURE_HMAC_SHA256, "HMAC-SHA1": SIGNATURE_HMAC_SHA1}


def _cache_key(kind: str, base_url: str, *parts: str) -> str:
    identity = "\n".join((base_url.rstrip("/"), *parts))
    return f"{kind}:" + hashlib.sha256(identity.encode()).hexdigest()[:24]


class IntegrationBearerProvider:
    """An integration's access token sent as `Authorization: Bearer` (Magento 2.4.4+ with
    standalone bearer tokens enabled); it does not expire, so it is never renewed."""

    def __init__(
        self, settings: IntegrationBearerAuthSettings, base_url: str, clock: Clock
    ) -> None:
        self._secret = settings.access_token
        self._clock = clock
        self._fingerprint = fingerprint(self._secret.get_secret_value())
        # A different token is a different credential: never hand out the old one's entry.
        self._key = _cache_key("magento-bearer", base_url, self._fingerprint)

    @property
    def cache_key(self) -> str:
        """One entry per store and token."""
        return self._key

    @property
    def refresh_margin(self) -> float:
        """No expiry, so no margin."""
        return 0.0

    async def obtain(self, previous: AccessToken | None) -> AccessToken:
        """The configured token's identity (never its value: see the module docstring)."""
        return AccessToken(self._fingerprint, None, self._clock.now())

    def auth_headers(self, token: AccessToken) -> dict[str, str]:
        """The integration's access token as a bearer token."""
        return {"Authorization": f"Bearer {self._secret.get_secret_value()}"}


class IntegrationOAuth1Provider:
    """Signs every request with an integration's consumer key/secret and access token/secret
    (OAuth 1.0a, RFC 5849, by oauthlib): method, URL with its query, a fresh nonce and the
    timestamp of the injected clock."""

    def __init__(
        self,
        settings: IntegrationOAuth1AuthSettings,
        base_url: str,
        clock: Clock,
        *,
        nonce: Callable[[], str] | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._nonce = nonce or (lambda: secrets.token_hex(16))
        self._fingerprint = fingerprint(settings.access_token.get_secret_value())
        # Any of the four differing is another credential, so another entry (refusals of one
        # must not invalidate the other's).
        self._key = _cache_key(
            "magento-oauth1",
            base_url,
            settings.consumer_key,
            self._fingerprint,
            fingerprint(settings.consumer_secret.get_secret_value()),
            fingerprint(settings.access_token_secret.get_secret_value()),
        )

    @property
    def cache_key(self) -> str:
        """One entry per store, consumer and access token."""
        return self._key

    @property
    def refresh_margin(self) -> float:
        """Integration tokens do not expire, so no margin."""
        return 0.0

    async def obtain(self, previous: AccessToken | None) -> AccessToken:
        """The configured access token's identity (never its value: see the module docstring)."""
        return AccessToken(self._fingerprint, None, self._clock.now())

    def auth_headers(self, token: AccessToken) -> dict[str, str]:
        """Never enough here: a signature covers the request, so `request_headers` makes it."""
        raise NotImplementedError(
            "OAuth 1.0a signs each request: use request_headers(token, method, url, params)"
        )

    def request_headers(
        self,
        token: AccessToken,
        method: str,
        url: str,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """The `Authorization: OAuth ...` header for `method url?params` (query parameters are
        part of the signature; a request body is not sent by the sources that use this)."""
        s = self._settings
        full = f"{url}?{urlencode(list(params.items()))}" if params else url
        client = Client(
            s.consumer_key,
            client_secret=s.consumer_secret.get_secret_value(),
            resource_owner_key=s.access_token.get_secret_value(),
            resource_owner_secret=s.access_token_secret.get_secret_value(),
            signature_method=_METHODS[s.signature_method],
            nonce=self._nonce(),
            timestamp=str(int(self._clock.now().timestamp())),
        )
        # The stubs want a Literal of method names; the client only ever sends real ones.
        _, headers, _ = client.sign(full, http_method=cast(Any, method.upper()))
        return {"Authorization": headers["Authorization"]}
