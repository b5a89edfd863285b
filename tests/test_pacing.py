"""A source's pacing end to end on virtual time: SourceClient, its throttles and its pause gate
against a simulated store with a token bucket (the emulator's), a little network jitter, and 429s.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from syncd.config import HttpSettings
from syncd.emulator.limits import TokenBucket
from syncd.http import RateThrottle, RequestStats
from syncd.http.adaptive import RateTuning
from syncd.http.client import SourceClient
from syncd.http.retry import RetryPolicy
from syncd.http.throttle import AdaptiveThrottle, Throttle
from tests.clocks import VirtualClock
from tests.rate_sim import Answer, Exchange


@dataclass
class Store:
    """Answers through a token bucket; `refuse` lists arrivals (1-based) answered 429 regardless."""

    rate: float
    burst: int
    clock: VirtualClock
    refuse: frozenset[int] = frozenset()
    seed: int = 1
    arrivals: list[tuple[float, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._bucket = TokenBucket(self.rate, self.burst, self.clock)
        self._rng = random.Random(self.seed)

    def request(self, method: str, url: str, **_: Any) -> Exchange:
        return Exchange(self)

    async def answer(self) -> Answer:
        await self.clock.sleep(self._rng.uniform(0.001, 0.006))  # on the way in
        wait = self._bucket.take()
        if len(self.arrivals) + 1 in self.refuse:
            wait = wait or 0.05  # a stray 429: another client of the store spent the token
        self.arrivals.append((self.clock.monotonic(), 200 if wait is None else 429))
        await self.clock.sleep(0.02 + self._rng.uniform(0, 0.01))  # work and the way back
        if wait is None:
            return Answer(200, {})
        return Answer(429, {"Retry-After": str(max(1, math.ceil(wait)))})

    @property
    def refused_at(self) -> list[float]:
        return [at for at, status in self.arrivals if status == 429]

    def accepted_share(self, wall: float) -> float:
        """Accepted requests over what the bucket admits in `wall` seconds."""
        accepted = sum(1 for _, status in self.arrivals if status == 200)
        return accepted / (self.burst + self.rate * wall)


def client_for(store: Store, throttles: Iterable[Throttle], concurrency: int = 8) -> SourceClient:
    return SourceClient(
        name="shop",
        session=store,  # type: ignore[arg-type]
        clock=store.clock,
        rng=random.Random(2),
        policy=RetryPolicy.from_settings(HttpSettings()),
        max_concurrency=concurrency,
        timeout=aiohttp.ClientTimeout(total=30),
        throttles=list(throttles),
    )


def paced(store: Store, rate: float, burst: int) -> list[Throttle]:
    """What `build_source` and the pool give a source configured with the store's limit."""
    policy = RetryPolicy.from_settings(HttpSettings())
    tuning = RateTuning.from_settings(HttpSettings())
    return [AdaptiveThrottle("shop", store.clock, tuning, policy, rate), RateThrottle(rate, burst)]


async def drain(client: SourceClient, requests: int, workers: int = 8) -> float:
    """`requests` GETs by `workers` workers; returns the virtual seconds they took."""
    loop = asyncio.get_running_loop()  # its time is the test's VirtualClock ("loop" rule)
    stats = RequestStats()
    todo = iter(range(requests))

    async def worker() -> None:
        for _ in todo:
            await client.get_json("http://store.test/p", stats=stats)

    start = loop.time()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return loop.time() - start


@pytest.mark.parametrize(("rate", "burst"), [(5, 5), (20, 20), (5, 2), (100, 10)])
def test_at_the_store_limit_nothing_is_refused(rate: float, burst: int) -> None:
    """Configured with the store's rate and burst, 300 requests draw no 429 and use the limit."""

    clock = VirtualClock(advance="loop")

    async def main() -> tuple[Store, float]:
        store = Store(rate, burst, clock)
        wall = await drain(client_for(store, paced(store, rate, burst)), 300)
        return store, wall

    store, wall = clock.run(main())
    assert store.refused_at == []
    assert store.accepted_share(wall) >= 0.95


@pytest.mark.parametrize(("rate", "burst"), [(5, 5), (20, 20), (5, 2)])
def test_a_stray_429_costs_one_answer_and_holds_every_worker(rate: float, burst: int) -> None:
    """One refused request: nothing reaches the store during its Retry-After, and the workers
    that waited meanwhile do not leave together when it ends (which drew more 429s)."""

    clock = VirtualClock(advance="loop")

    async def main() -> tuple[Store, float]:
        store = Store(rate, burst, clock, refuse=frozenset({30}))
        wall = await drain(client_for(store, paced(store, rate, burst)), 300)
        return store, wall

    with capture_logs() as logs:
        store, wall = clock.run(main())
    (refused,) = store.refused_at
    pause = next(e["retry_after"] for e in logs if e["event"] == "http.rate_limited")
    during = [at for at, _ in store.arrivals if refused < at < refused + pause]
    assert during == []
    assert store.accepted_share(wall) >= 0.8
    assert next(e["reason"] for e in logs if e["event"] == "http.rate_adjusted") == "rate_limited"


def test_fixed_rate_paces_at_the_configured_rate() -> None:
    """RateThrottle(10/s, burst 1): 51 requests take 5 s, whatever the concurrency."""

    clock = VirtualClock(advance="loop")

    async def main() -> float:
        store = Store(1000, 1000, clock)
        return await drain(client_for(store, [RateThrottle(10, 1)]), 51)

    wall = clock.run(main())
    assert 5.0 <= wall <= 5.1


def test_burst_above_one_keeps_a_reserve_for_jitter() -> None:
    """Burst 10 at 100/s: 5 requests leave at once (50 ms of jitter's worth is held back)."""

    clock = VirtualClock(advance="loop")

    async def main() -> Store:
        store = Store(1000, 1000, clock)
        await drain(client_for(store, [RateThrottle(100, 10)], concurrency=20), 20, workers=20)
        return store

    store = clock.run(main())
    first = store.arrivals[0][0]
    at_once = sum(1 for at, _ in store.arrivals if at - first < 0.007)
    assert at_once == 5


def test_cancelled_waiters_give_their_places_back() -> None:
    """Attempts cancelled while waiting in a later throttle no longer count as in flight: after
    the first cut, the next 429 (an answer at the new rate) cuts again. Counted as leaked, they
    made it look like a late answer to the old flight, so the rate stayed too high."""

    clock = VirtualClock(advance="loop")
    cuts: list[float | None] = []

    async def main() -> None:
        store = Store(1000, 1000, clock, refuse=frozenset({2, 3}))
        adaptive = AdaptiveThrottle(
            "shop",
            store.clock,
            RateTuning.from_settings(HttpSettings()),
            RetryPolicy.from_settings(HttpSettings()),
            None,
        )
        cut = adaptive.rate.cut

        def counted(now: float, measured: float, resume_at: float | None = None, accepted: int = 0):  # type: ignore[no-untyped-def]
            cuts.append(adaptive.rate.rate)
            return cut(now, measured, resume_at, accepted)

        adaptive.rate.cut = counted  # type: ignore[method-assign]
        client = client_for(store, [adaptive, RateThrottle(0.5, 1)], concurrency=10)
        stats = RequestStats()
        await client.get_json("http://store.test/p", stats=stats)  # spends the slow bucket
        waiting = [
            asyncio.ensure_future(client.get_json("http://store.test/p", stats=stats))
            for _ in range(6)
        ]
        await clock.sleep(0.5)
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        await client.get_json("http://store.test/p", stats=stats)  # 429, 429, then 200

    clock.run(main())
    # Both 429s cut: the second from the rate the first one set (the floor here).
    assert len(cuts) == 2 and cuts[0] is None and cuts[1] is not None


@pytest.mark.parametrize(
    ("rate", "burst", "requests"), [(5, 2, 1000), (20, 2, 1000), (100, 10, 3000)]
)
def test_without_a_configured_rate_the_source_settles_below_the_store_limit(
    rate: float, burst: int, requests: int
) -> None:
    """No `rate_limit`: the source finds the store's limit and holds below it. Once it has, the
    second half of the run draws at most one 429 (a probe) and still gets >= 90% of the rate.
    (It used to be released at full speed after recovering, and drew a 429 each time.)"""

    clock = VirtualClock(advance="loop")

    async def main() -> tuple[Store, float]:
        store = Store(rate, burst, clock)
        adaptive = AdaptiveThrottle(
            "shop",
            store.clock,
            RateTuning.from_settings(HttpSettings()),
            RetryPolicy.from_settings(HttpSettings()),
            None,
        )
        wall = await drain(client_for(store, [adaptive]), requests)
        return store, wall

    store, wall = clock.run(main())
    halfway = clock.monotonic() - wall / 2  # the run ended at the clock's time
    late = [(at, status) for at, status in store.arrivals if at >= halfway]
    assert sum(1 for _, status in late if status == 429) <= 1
    accepted = sum(1 for _, status in late if status == 200)
    assert accepted / (rate * wall / 2) >= 0.9
