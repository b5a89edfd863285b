"""Adobe IMS OAuth Server-to-Server: the client_credentials grant behind Adobe Commerce (ACCS)."""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, timedelta

from syncd.auth.provider import TokenEndpoint
from syncd.auth.token import AccessToken
from syncd.clock import Clock
from syncd.config import ImsAuthSettings
from syncd.errors import AuthError
from syncd.redaction import Redactor


class ImsTokenProvider:
    """Mints IMS access tokens (no refresh token exists for this grant: a new one is minted).

    Its client secret and every token it mints are registered with `redactor` (the process's),
    and its refusals quote IMS through it.
    """

    def __init__(
        self,
        settings: ImsAuthSettings,
        endpoint: TokenEndpoint,
        clock: Clock,
        *,
        redactor: Redactor | None = None,
    ) -> None:
        self._settings = settings
        self._redactor = redactor or Redactor()
        self._endpoint = endpoint
        self._clock = clock
        identity = "\n".join(
            (
                str(settings.token_url),
                settings.client_id,
                settings.org_id,
                ",".join(settings.requested_scopes),
            )
        )
        self._key = "ims:" + hashlib.sha256(identity.encode()).hexdigest()[:24]

    @property
    def cache_key(self) -> str:
        """Same token URL, client, org and scopes: same tokens, whichever source asks."""
        return self._key

    @property
    def refresh_margin(self) -> float:
        """Configured early-refresh window (Adobe's own library uses 10 minutes)."""
        return self._settings.refresh_margin

    async def obtain(self, previous: AccessToken | None) -> AccessToken:
        """POST the client_credentials grant and read `access_token` / `expires_in`."""
        s = self._settings
        url = str(s.token_url)
        secret = s.client_secret.get_secret_value()
        self._redactor.register(secret, pin=True)  # before it is sent
        response = await self._endpoint.post_form(
            url,
            {
                "grant_type": "client_credentials",
                "client_id": s.client_id,
                "client_secret": secret,
                "scope": ",".join(s.requested_scopes),
            },
        )
        body = response.fields()
        if response.status != 200:
            error = body.get("error") or "unknown_error"
            description = body.get("error_description") or "no description"
            raise AuthError(
                self._redactor.redact(
                    f"IMS token request to {url} refused with HTTP {response.status}: "
                    f"{error}: {description}"
                ),
                status=response.status,
            )
        access = body.get("access_token")
        if not isinstance(access, str) or not access:
            raise AuthError(f"IMS token response from {url} has no access_token")
        self._redactor.register(access)
        expires_in = body.get("expires_in")
        now = self._clock.now()
        try:
            expires_at = _expiry(expires_in, now, url)
        except AuthError as exc:
            raise AuthError(self._redactor.redact(str(exc))) from None
        return AccessToken(access, expires_at, now)

    def auth_headers(self, token: AccessToken) -> dict[str, str]:
        """The three headers the ACCS gateway requires."""
        return {
            "Authorization": f"Bearer {token.value}",
            "x-api-key": self._settings.client_id,
            "x-gw-ims-org-id": self._settings.org_id,
        }


def _expiry(expires_in: object, now: datetime, url: str) -> datetime:
    """When a token with `expires_in` (seconds, a number or numeric string) expires.

    Anything but a finite, positive number of seconds is refused: 0 or less would mint a token
    for every request, and infinity (JSON `1e999`) cannot be added to a date.
    """
    problem = f"IMS token response from {url} has an invalid expires_in: {repr(expires_in)[:40]}"
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float | str):
        raise AuthError(f"{problem} (expected a number of seconds)")
    try:
        lifetime = float(expires_in)
    except ValueError:
        raise AuthError(f"{problem} (expected a number of seconds)") from None
    if not math.isfinite(lifetime) or lifetime <= 0:
        raise AuthError(f"{problem} (expected a finite number of seconds above 0)")
    try:
        return now + timedelta(seconds=lifetime)
    except OverflowError:
        raise AuthError(f"{problem} (too far in the future to be a date)") from None
