"""AmeriCommerce signature OAuth: the token provider behind `X-AC-Auth-Token`.

Two ways to hold a credential: a static admin-console token from the configuration (it never
expires), or an OAuth grant that `syncd auth` obtained and persisted, refreshed here by signature
in the configured scheme (`legacy`: the 2014 docs, `current`: the later editions).
"""

from __future__ import annotations

import hashlib

from syncd.auth.americommerce.signatures import current_refresh_signature, legacy_refresh_signature
from syncd.auth.americommerce.wire import (
    REFRESH_PATH,
    SchemeNames,
    app_secret,
    naive_zone,
    read_grant,
    refusal,
)
from syncd.auth.provider import TokenEndpoint
from syncd.auth.token import AccessToken, fingerprint
from syncd.clock import Clock
from syncd.config import AmeriCommerceAuthSettings
from syncd.errors import AuthError, NeedsReauthError
from syncd.logging import get_logger
from syncd.redaction import Redactor

log = get_logger(__name__)

# What a refresh endpoint answers when the grant itself is refused (unknown, used or revoked
# refresh token, bad signature, a body the scheme does not know): only a new grant helps.
_GRANT_REFUSED = frozenset({400, 401, 403})


class AmeriCommerceTokenProvider:
    """Hands out a store's access token: a static admin-console token, or an OAuth grant refreshed by signature.

    `naive_time_offset` is the source's setting of that name: the zone of an `expires` without one.
    Every secret it sends or receives is registered with `redactor` (the process's) first.
    """

    def __init__(
        self,
        settings: AmeriCommerceAuthSettings,
        base_url: str,
        endpoint: TokenEndpoint,
        clock: Clock,
        *,
        source: str | None = None,
        naive_time_offset: int | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self._settings = settings
        self._redactor = redactor or Redactor()
        self._base_url = base_url.rstrip("/")
        self._endpoint = endpoint
        self._clock = clock
        self._source = source
        self._naive = naive_zone(naive_time_offset)
        if settings.static_token is not None:
            # A different static token is a different credential: never hand out the old one.
            static = fingerprint(settings.static_token.get_secret_value())
            identity = "\n".join((self._base_url, "static", static))
        else:
            # The scope is part of the grant: sources asking for different scopes need their own.
            identity = "\n".join(
                (self._base_url, settings.app_id, settings.auth_scheme, settings.scope)
            )
        self._key = "americommerce:" + hashlib.sha256(identity.encode()).hexdigest()[:24]

    @property
    def cache_key(self) -> str:
        """One grant per store, app, scheme and scope (one entry per static token)."""
        return self._key

    @property
    def refresh_margin(self) -> float:
        """Seconds before `expires` at which the token is refreshed."""
        return self._settings.refresh_margin

    def spends_refresh_token(self) -> bool:
        """An OAuth grant's refresh token may be single-use (the store decides); a static token
        presents nothing."""
        return self._settings.static_token is None

    @property
    def refresh_url(self) -> str:
        """The store's refresh endpoint."""
        return self._base_url + REFRESH_PATH

    async def obtain(self, previous: AccessToken | None) -> AccessToken:
        """The static token if configured; otherwise `previous` (the persisted grant) refreshed.

        No grant yet, or one without a refresh token, raises `NeedsReauthError`: only an operator
        running `syncd auth` can create one. So does a refresh the store refuses (400/401/403).
        5xx and network failures surface as transport errors: the grant may still be good.

        Rotation, failed writes and crashes. Once the store has answered a refresh, the old pair
        may be dead: a single-use refresh token is spent, and a legacy refresh trades in the old
        access token. What a failure costs at each moment:
        1. Before the store commits the refresh: nothing; the persisted pair still works.
        2. After it commits, before the answer is in memory (crash, kill, or an answer lost on the
           way, whose retried POST is then refused): the new pair is lost. A reusable current-
           scheme refresh token still works, so the next run refreshes again; a single-use one or
           a legacy grant is refused, and the source is flagged `needs_reauth` (run `syncd auth`).
           No client can close this window: the store commits the rotation before it answers.
        3. Answer in memory, not yet committed to SQLite: `TokenCache` holds the pair as unsaved
           and writes access and refresh token as one row in one transaction, shielded from
           cancellation, retrying a failed write (`database is locked`) a bounded number of times.
           Until that commit the new access token is not sent and no other refresh is made. If
           every retry fails, the caller gets a StoreError (the run fails, the grant is not
           flagged), and every later request, and the cache's exit, writes the pair first. A
           crash or kill in this state costs what 2 does.
        4. After the commit: a restart finds the new pair (SQLite keeps the old row or the new
           one, never a mix) and uses it.
        """
        static = self._settings.static_token
        if static is not None:
            self._redactor.register(static.get_secret_value(), pin=True)
            return AccessToken(static.get_secret_value(), None, self._clock.now())
        if previous is None:
            raise NeedsReauthError(
                f"{self._who} has no AmeriCommerce grant yet: run '{self._command}'",
                source=self._source,
            )
        if not previous.refresh_token:
            raise NeedsReauthError(
                f"the AmeriCommerce token of {self._who} was refused or has expired and came "
                f"without a refresh token: run '{self._command}'",
                source=self._source,
            )
        return await self._refresh(previous, previous.refresh_token)

    async def _refresh(self, previous: AccessToken, refresh_token: str) -> AccessToken:
        s = self._settings
        secret = app_secret(s)
        names = SchemeNames.of(s)
        if s.auth_scheme == "legacy":
            fields = {
                names.app_id: s.app_id,
                "access_token": previous.value,
                "signature": legacy_refresh_signature(
                    secret, previous.value, refresh_token, s.app_id
                ),
            }
        else:
            fields = {
                names.app_id: s.app_id,
                "refresh_token": refresh_token,
                "signature": current_refresh_signature(secret, refresh_token, s.app_id),
            }
        self._redactor.register(secret, previous.value, refresh_token, fields["signature"])
        url = self.refresh_url
        response = await self._endpoint.post_form(url, fields, as_json=s.body_format == "json")
        if response.status == 200:
            token, problem = read_grant(
                response,
                self._clock.now(),
                what=f"the AmeriCommerce refresh at {url}",
                redactor=self._redactor,
                keep_refresh=refresh_token,
                naive_offset=self._naive,
            )
            if problem is not None:
                log.warning(
                    "token.expiry_unknown",
                    source=self._source,
                    detail=problem,
                    consequence="the token is used until the store refuses it, then refreshed",
                )
            return token
        reason = refusal(response, self._redactor)
        if response.status in _GRANT_REFUSED:
            hint = ""
            if response.status == 400:
                other = "current" if s.auth_scheme == "legacy" else "legacy"
                hint = f" (if the store speaks the other edition of the scheme, set auth_scheme = {other!r})"
            raise NeedsReauthError(
                f"AmeriCommerce refused to refresh the grant of {self._who} at {url} ({reason}): "
                f"the grant is gone, run '{self._command}'{hint}",
                source=self._source,
                status=response.status,
            )
        raise AuthError(
            f"AmeriCommerce refresh at {url} failed ({reason}): check base_url",
            source=self._source,
            status=response.status,
        )

    @property
    def _who(self) -> str:
        return f"source {self._source!r}" if self._source else f"store {self._base_url}"

    @property
    def _command(self) -> str:
        return f"syncd auth {self._source or 'SOURCE'}"

    def auth_headers(self, token: AccessToken) -> dict[str, str]:
        """AmeriCommerce authenticates API calls with one header."""
        return {"X-AC-Auth-Token": token.value}
