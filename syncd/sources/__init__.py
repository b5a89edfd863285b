"""Platform adapters behind the `Source` protocol, and the factory that wires one from its settings."""

from __future__ import annotations

from syncd.auth import TokenCache
from syncd.auth.ims import ImsTokenProvider
from syncd.clock import Clock
from syncd.config import AdobeCommerceSourceSettings, SourceSettings
from syncd.http import ClientPool, RateThrottle, SourceAuth, Throttle
from syncd.sources.adobe_commerce import AdobeCommerceSource
from syncd.sources.base import Page, Source

__all__ = ["AdobeCommerceSource", "Page", "Source", "build_source"]


def build_source(
    settings: SourceSettings, pool: ClientPool, cache: TokenCache, clock: Clock
) -> Source:
    """The adapter for `settings.kind`, with its own client on the shared pool and token cache."""
    common = {
        "name": settings.name,
        "max_concurrency": settings.max_concurrency,
        "request_timeout": settings.request_timeout,
        "connect_timeout": settings.connect_timeout,
    }
    throttles: list[Throttle] = []
    if settings.rate_limit is not None:
        throttles.append(RateThrottle(settings.rate_limit, settings.rate_burst))
    if isinstance(settings, AdobeCommerceSourceSettings):
        provider = ImsTokenProvider(settings.auth, pool, clock)
        client = pool.client(
            **common,  # type: ignore[arg-type]
            auth=SourceAuth(provider, cache, settings.name),
            headers={"Accept": "application/json"},
            throttles=throttles,
        )
        return AdobeCommerceSource(settings, client)
    raise NotImplementedError(f"source kind {settings.kind!r} is not supported yet")
