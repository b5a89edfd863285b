"""AdaptiveThrottle on a fake clock: free until a 429, then held, paced, re-planned and recovering."""

from __future__ import annotations

import asyncio
import random
import re

import pytest
from aioresponses import aioresponses
from structlog.testing import capture_logs

from syncd.clock import FakeClock
from syncd.config import HttpSettings
from syncd.http import ClientPool, RateThrottle, RequestStats, Response
from syncd.http.adaptive import RateTuning
from syncd.http.retry import RetryPolicy
from syncd.http.throttle import AdaptiveThrottle
from tests.conftest import ManualClock, settle

TUNING = RateTuning(decrease=0.5, recovery_step=0.25, recovery_interval=10.0, floor=0.1)
OK = Response(200, {}, "application/json", b"{}")


def too_many(retry_after: str | None = "3") -> Response:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return Response(429, headers, "application/json", b"{}")


def throttle(clock: FakeClock, ceiling: float | None = 2.0) -> AdaptiveThrottle:
    return AdaptiveThrottle("shop", clock, TUNING, RetryPolicy(default_retry_after=5), ceiling)


async def test_no_pacing_before_the_first_429(clock: FakeClock) -> None:
    """An unengaged throttle never waits, whatever the ceiling."""
    paced = throttle(clock)
    for _ in range(50):
        await paced.acquire()
        paced.observe(OK)
    assert clock.slept == []


async def test_a_429_holds_for_retry_after_then_paces_at_the_cut_rate(clock: FakeClock) -> None:
    """Ceiling 2/s cut to 1/s: the next slot is after Retry-After, the ones after 1 s apart."""
    paced = throttle(clock)
    await paced.acquire()
    start = clock.monotonic()
    with capture_logs() as logs:
        paced.observe(too_many("3"))
    sent = []
    for _ in range(3):
        await paced.acquire()
        sent.append(clock.monotonic() - start)
        paced.observe(OK)
    assert sent == [3.0, 4.0, 5.0]
    assert logs == [
        {
            "event": "http.rate_adjusted",
            "log_level": "debug",
            "source": "shop",
            "old_rate": None,
            "new_rate": 1.0,
            "reason": "rate_limited",
            "retry_after": 3.0,
        }
    ]


async def test_one_cut_per_flight_of_requests(clock: FakeClock) -> None:
    """Four requests sent together all answered 429: the rate is cut once, not four times."""
    paced = throttle(clock, ceiling=8.0)
    for _ in range(4):
        await paced.acquire()
    with capture_logs() as logs:
        for _ in range(4):
            paced.observe(too_many())
    assert paced.rate.rate == 4.0
    assert [e["reason"] for e in logs] == ["rate_limited"]
    # The next flight was sent at the cut rate: its 429 cuts again.
    await paced.acquire()
    with capture_logs() as logs:
        paced.observe(too_many())
    assert paced.rate.rate == 2.0


async def test_a_429_without_retry_after_holds_for_the_default(clock: FakeClock) -> None:
    """No header: the policy's default pause (5 s here) holds the next slot."""
    paced = throttle(clock)
    await paced.acquire()
    start = clock.monotonic()
    paced.observe(too_many(None))
    await paced.acquire()
    assert clock.monotonic() - start == 5.0


async def test_an_unanswered_request_frees_its_place_without_a_cut(clock: FakeClock) -> None:
    """A timeout (None) is no rate signal: nothing is cut."""
    paced = throttle(clock)
    await paced.acquire()
    paced.observe(None)
    assert not paced.rate.engaged


async def test_waiters_planned_at_the_old_rate_wait_for_the_new_plan() -> None:
    """Workers already waiting for a slot when a 429 arrives leave after its pause, one by one."""
    clock = ManualClock()
    paced = throttle(clock, ceiling=2.0)
    await paced.acquire()
    paced.observe(too_many("1"))  # engaged at 1/s, next slot in 1 s
    clock.advance(1)
    await paced.acquire()  # slot at t=1, the next at t=2 and t=3
    waiters = [asyncio.create_task(paced.acquire()) for _ in range(2)]
    await settle()
    paced.observe(too_many("4"))  # cut to 0.5/s, hold until t=5
    clock.advance(1)  # t=2: the first waiter's old slot; its plan is void now
    await settle()
    assert not any(w.done() for w in waiters)
    clock.advance(3)  # t=5
    await settle()
    assert [w.done() for w in waiters] == [True, False]
    clock.advance(2)  # t=7: 1/0.5 s later
    await settle()
    assert all(w.done() for w in waiters)


async def test_recovery_is_logged_and_speeds_the_pacing_up(clock: FakeClock) -> None:
    """After a cut, every 10 s without a 429 wins back 25% of the ceiling."""
    paced = throttle(clock, ceiling=2.0)
    await paced.acquire()
    paced.observe(too_many("1"))
    clock.advance(21)  # 1 s of Retry-After, then 2 recovery intervals
    with capture_logs() as logs:
        await paced.acquire()
    assert [(e["old_rate"], e["new_rate"], e["reason"]) for e in logs] == [(1.0, 2.0, "recovered")]
    assert paced.rate.rate == 2.0


async def test_the_pool_gives_each_source_an_adaptive_throttle_under_its_ceiling(
    clock: FakeClock, http_mock: aioresponses
) -> None:
    """Through a pool-built client: a 429 cuts the configured 5/s and says so."""
    url = "http://127.0.0.1:9/rest/V1/products"
    http_mock.get(
        re.compile(r"^http://127\.0\.0\.1:9/.*$"), status=429, headers={"Retry-After": "2"}
    )
    http_mock.get(re.compile(r"^http://127\.0\.0\.1:9/.*$"), payload={"items": []})
    settings = HttpSettings(rate_decrease=0.5)
    async with ClientPool(settings, clock, random.Random(1)) as pool:
        client = pool.client(name="shop", max_concurrency=2, request_timeout=5,
                             connect_timeout=5, throttles=[RateThrottle(5.0)])  # fmt: skip
        with capture_logs() as logs:
            await client.get_json(url, stats=RequestStats())
    adjusted = [e for e in logs if e["event"] == "http.rate_adjusted"]
    assert [(e["source"], e["old_rate"], e["new_rate"]) for e in adjusted] == [("shop", None, 2.5)]


async def test_adaptive_rate_can_be_switched_off(clock: FakeClock, http_mock: aioresponses) -> None:
    """adaptive_rate = false: a 429 pauses the source but never changes its rate."""
    url = "http://127.0.0.1:9/rest/V1/products"
    http_mock.get(
        re.compile(r"^http://127\.0\.0\.1:9/.*$"), status=429, headers={"Retry-After": "2"}
    )
    http_mock.get(re.compile(r"^http://127\.0\.0\.1:9/.*$"), payload={"items": []})
    async with ClientPool(HttpSettings(adaptive_rate=False), clock, random.Random(1)) as pool:
        client = pool.client(name="shop", max_concurrency=2, request_timeout=5, connect_timeout=5)
        with capture_logs() as logs:
            await client.get_json(url, stats=RequestStats())
    assert not [e for e in logs if e["event"] == "http.rate_adjusted"]


async def test_the_fixed_rate_keeps_one_request_of_its_burst_in_reserve() -> None:
    """rate_burst=5 sends 4 back to back, then waits for the bucket (here: ~1000 s)."""
    fixed = RateThrottle(rate=0.001, burst=5)
    for _ in range(4):
        await asyncio.wait_for(fixed.acquire(), timeout=1)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(fixed.acquire(), timeout=0.01)


async def test_a_burst_of_one_stays_one() -> None:
    """Nothing to keep in reserve when the burst is a single request."""
    fixed = RateThrottle(rate=0.001, burst=1)
    await asyncio.wait_for(fixed.acquire(), timeout=1)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(fixed.acquire(), timeout=0.01)


async def test_one_summary_per_run_with_the_found_rate(clock: FakeClock) -> None:
    """The run's stats remember the throttles that paced it; at its end each logs one
    `http.rate_summary` (requests, 429s, mean and found rate) and starts counting afresh."""
    paced = throttle(clock, ceiling=None)
    stats = RequestStats()
    stats.paced_by([paced, RateThrottle(1.0)])
    stats.paced_by([paced])
    assert stats.pacers == [paced]
    for _ in range(4):
        await paced.acquire()
        paced.observe(OK)
        clock.advance(0.5)
    await paced.acquire()
    paced.observe(too_many("1"))
    with capture_logs() as logs:
        stats.summarize()
        stats.summarize()
    (summary,) = logs
    assert summary["event"] == "http.rate_summary" and summary["source"] == "shop"
    assert (summary["requests"], summary["rate_limited"], summary["mean_rate"]) == (5, 1, 2.5)
    assert summary["configured_rate"] is None and summary["found_rate"] is None
    assert summary["paced_rate"] is not None
