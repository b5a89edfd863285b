"""AmeriCommerce signature OAuth: the token provider behind `X-AC-Auth-Token`.

Interface first: admin-console (static) tokens work; the OAuth refresh flows are being built.
"""

from __future__ import annotations

import hashlib

from syncd.auth.provider import TokenEndpoint
from syncd.auth.token import AccessToken
from syncd.clock import Clock
from syncd.config import AmeriCommerceAuthSettings


class AmeriCommerceTokenProvider:
    """Hands out a store's access token: a static admin-console token, or an OAuth grant refreshed by signature."""

    def __init__(
        self,
        settings: AmeriCommerceAuthSettings,
        base_url: str,
        endpoint: TokenEndpoint,
        clock: Clock,
    ) -> None:
        self._settings = settings
        self._base_url = base_url.rstrip("/")
        self._endpoint = endpoint
        self._clock = clock
        identity = "\n".join((self._base_url, settings.app_id, settings.auth_scheme))
        self._key = "americommerce:" + hashlib.sha256(identity.encode()).hexdigest()[:24]

    @property
    def cache_key(self) -> str:
        """One grant per store and app."""
        return self._key

    @property
    def refresh_margin(self) -> float:
        """Seconds before `expires` at which the token is refreshed."""
        return self._settings.refresh_margin

    async def obtain(self, previous: AccessToken | None) -> AccessToken:
        """The static token if configured; otherwise a refreshed OAuth grant."""
        static = self._settings.static_token
        if static is not None:
            return AccessToken(static.get_secret_value(), None, self._clock.now())
        raise NotImplementedError(
            "AmeriCommerce OAuth refresh is not implemented yet; configure static_token"
        )

    def auth_headers(self, token: AccessToken) -> dict[str, str]:
        """AmeriCommerce authenticates API calls with one header."""
        return {"X-AC-Auth-Token": token.value}
