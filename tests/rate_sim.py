"""A full sync against a store whose limit syncd is not told, on virtual time: the real SourceClient,
AdaptiveThrottle and pause gate against a token bucket that answers 429 + Retry-After (whole seconds,
as the emulator and HTTP do), a server that serves `workers` pages at once in `service` seconds, and a
client that spends `cpu` seconds of its one core on each page (syncd's own bound without a limit).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol

import aiohttp

from syncd.config import HttpSettings
from syncd.emulator.limits import TokenBucket
from syncd.http import RequestStats
from syncd.http.adaptive import RateTuning
from syncd.http.client import SourceClient
from syncd.http.rate_memory import RateMemory, RateStore
from syncd.http.retry import RetryPolicy
from syncd.http.throttle import AdaptiveThrottle, Throttle
from tests.clocks import VirtualClock


@dataclass
class Answer:
    """A bare HTTP answer, as much of aiohttp's response as the client reads."""

    status: int
    headers: dict[str, str]
    content_type: str = "application/json"

    @property
    def content(self) -> Answer:
        return self  # the client reads the body in chunks from `content`

    async def iter_any(self) -> AsyncIterator[bytes]:
        yield b'{"items": []}'


@dataclass
class SimStore:
    """A token bucket in front of a server of `workers` page builders; arrivals are recorded."""

    rate: float
    burst: int
    clock: VirtualClock
    service: float = 0.013
    workers: int = 4
    seed: int = 1
    # The network's round trip, half on the way in and half on the way back.
    rtt: float = 0.0
    # (seconds from the start, new rate): the store's limit changes while the sync runs.
    changes: tuple[tuple[float, float], ...] = ()
    arrivals: list[tuple[float, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._bucket = TokenBucket(self.rate, self.burst, self.clock)
        self._start = self.clock.monotonic()
        self._changes = list(self.changes)
        self._rng = random.Random(self.seed)
        self._builders = asyncio.Semaphore(self.workers)

    def request(self, method: str, url: str, **_: Any) -> Exchange:
        return Exchange(self)

    async def answer(self) -> Answer:
        await self.clock.sleep(self.rtt / 2 + self._rng.uniform(0.0002, 0.001))  # on the way in
        while self._changes and self.clock.monotonic() - self._start >= self._changes[0][0]:
            _, self.rate = self._changes.pop(0)
            self._bucket = TokenBucket(self.rate, self.burst, self.clock)
        wait = self._bucket.take()
        self.arrivals.append((self.clock.monotonic(), 200 if wait is None else 429))
        if wait is not None:
            await self.clock.sleep(0.0005 + self.rtt / 2)
            return Answer(429, {"Retry-After": str(max(1, math.ceil(wait - 1e-9)))})
        async with self._builders:
            await self.clock.sleep(self.service * self._rng.uniform(0.9, 1.1))
        await self.clock.sleep(self.rtt / 2)
        return Answer(200, {})

    @property
    def refused(self) -> int:
        return sum(1 for _, status in self.arrivals if status == 429)


class Answering(Protocol):
    """A simulated store: answers each request in its own (virtual) time."""

    async def answer(self) -> Answer: ...


class Exchange:
    """One request to a simulated store, as aiohttp's `session.request(...)` context manager."""

    def __init__(self, store: Answering) -> None:
        self._store = store

    async def __aenter__(self) -> Answer:
        return await self._store.answer()

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


@dataclass(frozen=True)
class SyncResult:
    """What one simulated sync did: wall seconds, requests, 429s, and the share of the allowed
    (accepted requests over the bucket's burst plus its rate times the wall time)."""

    wall: float
    requests: int
    refused: int
    allowed_share: float
    share_429: float
    throttle: AdaptiveThrottle
    store: SimStore
    ended: datetime

    def accepted_between(self, start: float, end: float) -> int:
        """Requests the store accepted from `start` to `end` seconds into the sync."""
        first = self.store.arrivals[0][0]
        return sum(
            1 for at, status in self.store.arrivals if status == 200 and start <= at - first < end
        )


async def full_sync(
    rate: float,
    burst: int,
    pages: int,
    *,
    concurrency: int = 8,
    cpu: float = 0.0047,
    seed: int = 1,
    changes: tuple[tuple[float, float], ...] = (),
    service: float = 0.013,
    rtt: float = 0.0,
    rates: RateStore | None = None,
    clock: VirtualClock,
) -> SyncResult:
    """`pages` pages fetched by `concurrency` workers, each page costing `cpu` of one shared core;
    with `rates`, the source's pace is loaded from it first and saved to it at the end."""
    store = SimStore(rate, burst, clock, service=service, seed=seed, rtt=rtt, changes=changes)
    policy = RetryPolicy.from_settings(HttpSettings())
    adaptive = AdaptiveThrottle(
        "shop", clock, RateTuning.from_settings(HttpSettings()), policy, None
    )
    throttles: list[Throttle] = [adaptive]
    memory = None
    if rates is not None:
        memory = RateMemory("shop", rates, clock, policy, adaptive)
        throttles.insert(0, memory)
    client = SourceClient(
        name="shop",
        session=store,  # type: ignore[arg-type]
        clock=clock,
        rng=random.Random(seed),
        policy=policy,
        max_concurrency=concurrency,
        timeout=aiohttp.ClientTimeout(total=30),
        throttles=throttles,
    )
    stats = RequestStats()
    core = asyncio.Lock()
    todo = iter(range(pages))

    async def worker() -> None:
        for _ in todo:
            await client.get_json("http://store.test/p", stats=stats)
            async with core:
                await clock.sleep(cpu)

    start = clock.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = clock.monotonic() - start
    if memory is not None:
        await memory.aclose()
    requests = len(store.arrivals)
    accepted = requests - store.refused
    return SyncResult(
        wall=wall,
        requests=requests,
        refused=store.refused,
        allowed_share=accepted / (burst + rate * wall),
        share_429=store.refused / requests,
        throttle=adaptive,
        store=store,
        ended=clock.now(),
    )


def simulate(
    rate: float, burst: int, pages: int, start: datetime | None = None, **kwargs: Any
) -> SyncResult:
    """Run `full_sync` on a fresh event loop and auto-advancing virtual clock (from `start`)."""

    async def main() -> SyncResult:
        clock = VirtualClock(advance="auto", start=start)
        try:
            return await full_sync(rate, burst, pages, clock=clock, **kwargs)
        finally:
            await clock.close()

    return asyncio.run(main())
