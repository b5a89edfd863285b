"""The operator's one-time AmeriCommerce flows behind `syncd auth`: desktop login or web redirect, then the exchange.

Both end in a grant (access token, refresh token, expiry) that `install_grant` persists as the
source's current token and that clears the source's `needs_reauth` flag. The user API key of the
desktop flow is used for one signature and kept nowhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlencode

from syncd.auth.americommerce.callback import RedirectListener
from syncd.auth.americommerce.signatures import (
    desktop_exchange_prose_signature,
    desktop_exchange_summary_signature,
    desktop_login_signature,
    web_exchange_signature,
)
from syncd.auth.americommerce.wire import (
    ACCESS_TOKEN_PATH,
    AUTHORIZE_PATH,
    SchemeNames,
    app_secret,
    naive_zone,
    read_grant,
    refusal,
)
from syncd.auth.cache import TokenCache
from syncd.auth.provider import EndpointResponse, TokenEndpoint, TokenProvider
from syncd.auth.token import AccessToken
from syncd.clock import Clock
from syncd.config import AmeriCommerceAuthSettings
from syncd.errors import AuthError, ConfigError
from syncd.logging import get_logger
from syncd.redaction import Redactor
from syncd.store import Store

log = get_logger(__name__)

_USER_KEY_HELP = (
    "Tools > Apps & Addons > API Apps & Integrations > More Actions > View User Authorization Key"
)


@dataclass(frozen=True, slots=True)
class UserLogin:
    """A store user for the desktop flow; the key signs one request and is never stored."""

    username: str
    user_key: str = field(repr=False)


class AmeriCommerceAuthorizer:
    """Obtains a new grant from one store, by the legacy desktop flow or the web flow (both schemes).

    `naive_time_offset` is the source's setting of that name: the zone of an `expires` without one.
    The user key, the authorisation code, every signature and the grant are registered with
    `redactor` (the process's) the moment they exist.
    """

    def __init__(
        self,
        settings: AmeriCommerceAuthSettings,
        base_url: str,
        endpoint: TokenEndpoint,
        clock: Clock,
        *,
        naive_time_offset: int | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self._settings = settings
        self._redactor = redactor or Redactor()
        self._base_url = base_url.rstrip("/")
        self._endpoint = endpoint
        self._clock = clock
        self._names = SchemeNames.of(settings)
        self._naive = naive_zone(naive_time_offset)

    @property
    def has_desktop_flow(self) -> bool:
        """Only the 2014 (legacy) edition documents the desktop flow."""
        return self._settings.auth_scheme == "legacy"

    def authorize_url(self) -> str:
        """Where the operator's browser starts the web flow."""
        s = self._settings
        query = urlencode(
            {self._names.app_id: s.app_id, "scope": s.scope, self._names.redirect: s.redirect_url}
        )
        return f"{self._base_url}{AUTHORIZE_PATH}?{query}"

    async def desktop(self, login: UserLogin) -> AccessToken:
        """Log in with the user's API key, then exchange the handshake signed per `desktop_signature`."""
        s = self._settings
        if not self.has_desktop_flow:
            raise ConfigError(
                [
                    f"auth.auth_scheme: {s.auth_scheme!r} has no desktop flow: "
                    "use the web flow (syncd auth SOURCE --web) or a static_token"
                ]
            )
        secret = app_secret(s)
        login_signature = desktop_login_signature(
            secret, login.username, login.user_key, s.app_id, s.scope, s.redirect_url
        )
        self._redactor.register(secret, login.user_key, login_signature)
        fields = {
            "app_id": s.app_id,
            "scope": s.scope,
            "redirect_url": s.redirect_url,
            "username": login.username,
            "signature": login_signature,
        }
        response = await self._post(AUTHORIZE_PATH, fields)
        if response.status != 200:
            reason = refusal(response, self._redactor)
            raise AuthError(
                f"the store refused the desktop login of {login.username!r} ({reason}): check the "
                f"username and user API key ({_USER_KEY_HELP}; a user can regenerate it), app_id "
                "and app_secret",
                status=response.status,
            )
        handshake = response.fields()
        auth_id, code = handshake.get("auth_id"), handshake.get("code")
        self._redactor.register(code if isinstance(code, str) else None)
        if not isinstance(auth_id, str) or not auth_id or not isinstance(code, str) or not code:
            raise AuthError("the store accepted the desktop login but sent no auth_id and code")
        if s.desktop_signature == "summary":
            signature = desktop_exchange_summary_signature(
                secret, login.username, code, s.app_id, s.scope, s.redirect_url
            )
        else:
            signature = desktop_exchange_prose_signature(
                secret, code, s.app_id, s.scope, s.redirect_url
            )
        other = "summary" if s.desktop_signature == "prose" else "prose"
        return await self._exchange(
            {"app_id": s.app_id, "auth_id": auth_id, "signature": signature},
            flow="desktop",
            advice=(
                f"signature rejected: see option desktop_signature (now {s.desktop_signature!r}; "
                f"the 2014 document also describes {other!r})"
            ),
        )

    async def web(self, *, within: float, show: Callable[[str], None]) -> AccessToken:
        """Listen on `redirect_url`, `show` the authorise URL, wait `within` seconds for the redirect, exchange it."""
        s = self._settings
        secret = app_secret(s)
        async with RedirectListener(s.redirect_url, clock=self._clock) as listener:
            show(self.authorize_url())
            callback = await listener.wait(within)
        self._redactor.register(callback.code)
        signature = web_exchange_signature(secret, callback.code, s.app_id, s.scope, s.redirect_url)
        return await self._exchange(
            {self._names.app_id: s.app_id, "auth_id": callback.auth_id, "signature": signature},
            flow="web",
            advice=(
                "signature rejected or handshake expired: check app_secret, that redirect_url is "
                "spelled exactly as the app registered it, and finish within a few minutes"
            ),
        )

    async def _exchange(self, fields: Mapping[str, str], *, flow: str, advice: str) -> AccessToken:
        self._redactor.register(fields["signature"])
        response = await self._post(ACCESS_TOKEN_PATH, fields)
        what = f"the {flow} exchange at {self._base_url}{ACCESS_TOKEN_PATH}"
        if response.status != 200:
            reason = refusal(response, self._redactor)
            hint = f": {advice}" if _may_be_the_signature(response.status, reason) else ""
            raise AuthError(f"the store refused {what} ({reason}){hint}", status=response.status)
        token, problem = read_grant(
            response,
            self._clock.now(),
            what=what,
            redactor=self._redactor,
            naive_offset=self._naive,
        )
        if problem is not None:
            log.warning("token.expiry_unknown", detail=problem, flow=flow)
        return token

    async def _post(self, path: str, fields: Mapping[str, str]) -> EndpointResponse:
        as_json = self._settings.body_format == "json"
        return await self._endpoint.post_form(self._base_url + path, fields, as_json=as_json)


def _may_be_the_signature(status: int, reason: str) -> bool:
    """Whether a refused exchange may be a refused signature, so the signing advice applies.

    The docs give no status for it: the emulator answers 401, a store may answer 400 or 403. So
    401 and 403 always count, a 400 when the store's words mention the signature; another 400
    ("auth_id is required") says what is wrong by itself.
    """
    if "signature" in reason.lower():
        return True
    return status in (401, 403)


async def install_grant(
    cache: TokenCache,
    store: Store,
    provider: TokenProvider,
    token: AccessToken,
    source: str,
    now: datetime,
) -> None:
    """Make `token` the source's current credential and clear its `needs_reauth` flag."""
    await cache.install(provider, token, source)
    await store.set_needs_reauth(source, None, now)
