"""The daemon's one aiohttp session (pooled keep-alive connections) and the clients built on it."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import aiohttp

from syncd import __version__
from syncd.auth import EndpointResponse
from syncd.clock import Clock
from syncd.config import HttpSettings
from syncd.http.adaptive import RateTuning
from syncd.http.call_limit import CallLimitThrottle
from syncd.http.client import SourceAuth, SourceClient
from syncd.http.rate_memory import RateMemory, RateStore
from syncd.http.retry import RetryPolicy
from syncd.http.stats import RequestStats
from syncd.http.throttle import AdaptiveThrottle, RateThrottle, Throttle

USER_AGENT = f"syncd/{__version__} (+https://github.com/syncd)"


class ClientPool:
    """Owns the `ClientSession`; hands out per-source clients and posts to token endpoints."""

    def __init__(
        self,
        settings: HttpSettings,
        clock: Clock,
        rng: random.Random | None = None,
        *,
        rates: RateStore | None = None,
        observer: Callable[[str], Throttle] | None = None,
    ) -> None:
        self._settings = settings
        # Sees every answer of each source client, last among its throttles (`syncd check` reads
        # the rate-limit headers through it).
        self._observer = observer
        self._rates = rates  # where sources' paces are kept for their next owner (None: nowhere)
        self._memories: list[RateMemory] = []
        self._clock = clock
        self._rng = rng or random.Random()
        self._policy = RetryPolicy.from_settings(settings)
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._token_clients: dict[str, SourceClient] = {}
        self.token_stats = RequestStats()

    async def __aenter__(self) -> Self:
        if self._closed or self._session is not None:
            raise RuntimeError("ClientPool cannot be reopened; create a new ClientPool instead")
        connector = aiohttp.TCPConnector(limit=self._settings.pool_limit, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector, headers={"User-Agent": USER_AGENT}
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closed = True
        for memory in self._memories:
            await memory.aclose()
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        """The shared session (only while the pool is open)."""
        if self._session is None:
            raise RuntimeError("ClientPool is not open; use it inside 'async with ClientPool(...)'")
        return self._session

    def client(
        self,
        *,
        name: str,
        max_concurrency: int,
        request_timeout: float,
        connect_timeout: float,
        auth: SourceAuth | None = None,
        headers: Mapping[str, str] | None = None,
        throttles: Sequence[Throttle] = (),
        is_source: bool = True,
    ) -> SourceClient:
        """A client for one source, with its own limits, sharing the pool's connections.

        With `adaptive_rate` on, an `AdaptiveThrottle` goes first: its ceiling is the slowest
        fixed `RateThrottle` given (None: the source is unpaced until its first 429). With a
        `rates` store, a `RateMemory` goes before it: the source starts at its persisted pace.
        """
        adaptive = None
        if self._settings.adaptive_rate:
            ceiling = min((t.rate for t in throttles if isinstance(t, RateThrottle)), default=None)
            adaptive = AdaptiveThrottle(
                name, self._clock, RateTuning.from_settings(self._settings), self._policy, ceiling
            )
            throttles = [adaptive, *throttles]
        if self._rates is not None and is_source:
            memory = RateMemory(
                name,
                self._rates,
                self._clock,
                self._policy,
                adaptive,
                window=next((t for t in throttles if isinstance(t, CallLimitThrottle)), None),
                save_interval=self._settings.rate_save_interval,
            )
            self._memories.append(memory)
            throttles = [memory, *throttles]
        if self._observer is not None and is_source:
            throttles = [*throttles, self._observer(name)]
        return SourceClient(
            name=name,
            session=self.session,
            clock=self._clock,
            rng=self._rng,
            policy=self._policy,
            max_concurrency=max_concurrency,
            timeout=aiohttp.ClientTimeout(total=request_timeout, sock_connect=connect_timeout),
            auth=auth,
            headers=headers,
            throttles=throttles,
            is_source=is_source,
            max_body_size=self._settings.max_body_size,
        )

    async def post_form(
        self, url: str, fields: Mapping[str, str], *, as_json: bool = False
    ) -> EndpointResponse:
        """POST to a token endpoint, retrying network faults and 5xx; any other answer is returned.

        One client per endpoint origin: a token endpoint that throttles or fails pauses only the
        sources that use it.
        """
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        client = self._token_clients.get(origin)
        if client is None:
            client = self._token_clients[origin] = self.client(
                name=f"token-endpoint {origin}",
                max_concurrency=4,
                request_timeout=30,
                connect_timeout=10,
                is_source=False,
            )
        response = await client.request(
            "POST",
            url,
            stats=self.token_stats,
            data=None if as_json else fields,
            json_body=fields if as_json else None,
            headers={"Accept": "application/json"},
            expect_json=False,
            raise_for_status=False,
        )
        return EndpointResponse(response.status, response.content_type, response.body)
