"""Composition: the adapter, client and token provider a source's settings call for.

The daemon and the commands that talk to a source (`syncd check`) build sources here; the adapters
themselves (`syncd.sources`) know nothing of the auth flavours or the pool they are given.
"""

from __future__ import annotations

from typing import TypedDict

from syncd.auth import TokenCache
from syncd.auth.americommerce.refresh import AmeriCommerceTokenProvider
from syncd.auth.ims import ImsTokenProvider
from syncd.auth.magento_integration import IntegrationBearerProvider, IntegrationOAuth1Provider
from syncd.auth.provider import TokenProvider
from syncd.clock import Clock
from syncd.config import (
    AdobeCommerceSourceSettings,
    AmeriCommerceSourceSettings,
    ImsAuthSettings,
    IntegrationBearerAuthSettings,
    SourceSettings,
)
from syncd.http import ClientPool, RateThrottle, SourceAuth, Throttle
from syncd.http.call_limit import CallLimitThrottle
from syncd.redaction import Redactor
from syncd.sources import AdobeCommerceSource, AmeriCommerceSource, Source

__all__ = ["adobe_provider", "build_source"]


class _ClientLimits(TypedDict):
    """What every source's client takes from its settings, whatever the platform."""

    name: str
    max_concurrency: int
    request_timeout: float
    connect_timeout: float


def build_source(
    settings: SourceSettings, pool: ClientPool, cache: TokenCache, clock: Clock
) -> Source:
    """The adapter for `settings.kind`, with its own client on the shared pool and token cache."""
    common = _ClientLimits(
        name=settings.name,
        max_concurrency=settings.max_concurrency,
        request_timeout=settings.request_timeout,
        connect_timeout=settings.connect_timeout,
    )
    throttles: list[Throttle] = []
    if settings.rate_limit is not None:
        throttles.append(RateThrottle(settings.rate_limit, settings.rate_burst))
    if isinstance(settings, AdobeCommerceSourceSettings):
        provider = adobe_provider(settings, pool, clock, cache.redactor)
        client = pool.client(
            **common,
            auth=SourceAuth(provider, cache, settings.name),
            headers={"Accept": "application/json"},
            throttles=throttles,
        )
        return AdobeCommerceSource(settings, client)
    if isinstance(settings, AmeriCommerceSourceSettings):
        ac_provider = AmeriCommerceTokenProvider(
            settings.auth,
            str(settings.base_url),
            pool,
            clock,
            source=settings.name,
            naive_time_offset=settings.naive_time_offset,
            redactor=cache.redactor,
        )
        # Last in the list: the store's count is the strictest, so a request waits for it only
        # once every other throttle has admitted it (the client releases it if it is not sent).
        throttles.append(
            CallLimitThrottle(
                clock, window=settings.call_window, reserve=settings.call_limit_reserve
            )
        )
        ac_client = pool.client(
            **common,
            auth=SourceAuth(ac_provider, cache, settings.name),
            # Without no-cache the store answers GETs from its cache: stale pages.
            headers={"Accept": "application/json", "Cache-Control": "no-cache"},
            throttles=throttles,
        )
        return AmeriCommerceSource(settings, ac_client)
    raise NotImplementedError(f"source kind {settings.kind!r} is not supported yet")


def adobe_provider(
    settings: AdobeCommerceSourceSettings,
    pool: ClientPool,
    clock: Clock,
    redactor: Redactor | None = None,
) -> TokenProvider:
    """The token provider of an Adobe Commerce source's `auth.kind`: IMS, or an integration's
    bearer token or OAuth 1.0a signature."""
    auth = settings.auth
    if isinstance(auth, ImsAuthSettings):
        return ImsTokenProvider(auth, pool, clock, redactor=redactor)
    if isinstance(auth, IntegrationBearerAuthSettings):
        return IntegrationBearerProvider(auth, str(settings.base_url), clock)
    return IntegrationOAuth1Provider(auth, str(settings.base_url), clock)
