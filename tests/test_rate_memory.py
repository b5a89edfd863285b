"""A source's pace survives a move: its adaptive rate and a pending Retry-After pause are saved and
loaded by the next client built for the source (another replica, or a restarted process)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aioresponses import aioresponses
from structlog.testing import capture_logs

from syncd.config import HttpSettings
from syncd.errors import RateLimitedError
from syncd.http import ClientPool, RateThrottle, RequestStats
from syncd.http.adaptive import RateTuning
from syncd.http.call_limit import CallLimitThrottle
from syncd.http.rate_memory import RateMemory
from syncd.http.response import Response
from syncd.http.retry import RetryPolicy
from syncd.http.throttle import AdaptiveThrottle
from syncd.store import SourceRate, SqliteStore
from tests.clocks import FakeClock
from tests.conftest import settle

URL = "http://127.0.0.1:9/rest/V1/products"
ANY = re.compile(r"^http://127\.0\.0\.1:9/.*$")
# A request gives up rather than wait out a 30 s Retry-After: the source "moves" mid-pause.
SETTINGS = HttpSettings(rate_decrease=0.5, retry_deadline=10)


async def first_owner_is_told_to_wait(db: Path, clock: FakeClock, http_mock: aioresponses) -> None:
    """A client of `shop` (ceiling 5/s) gets a 429 with Retry-After: 30 and gives up."""
    http_mock.get(ANY, status=429, headers={"Retry-After": "30"})
    async with SqliteStore(db) as store, ClientPool(SETTINGS, clock, rates=store) as pool:
        client = pool.client(name="shop", max_concurrency=2, request_timeout=5,
                             connect_timeout=5, throttles=[RateThrottle(5.0)])  # fmt: skip
        with pytest.raises(RateLimitedError):
            await client.get_json(URL, stats=RequestStats())


async def next_owner_sends_two(db: Path, clock: FakeClock, http_mock: aioresponses) -> list[float]:
    """A new pool and client for `shop` on the same database send two requests; their sleeps."""
    http_mock.get(ANY, payload={"items": []}, repeat=True)
    clock.slept.clear()
    async with SqliteStore(db) as store, ClientPool(SETTINGS, clock, rates=store) as pool:
        client = pool.client(name="shop", max_concurrency=2, request_timeout=5,
                             connect_timeout=5, throttles=[RateThrottle(5.0)])  # fmt: skip
        for _ in range(2):
            assert (await client.get_json(URL, stats=RequestStats())).status == 200
    return list(clock.slept)


async def test_a_new_client_starts_at_the_persisted_rate_and_waits_out_the_pause(
    tmp_path: Path, clock: FakeClock, http_mock: aioresponses
) -> None:
    """The next owner waits the 20 s left of the pause, then sends at the cut rate (2.5/s)."""
    db = tmp_path / "syncd.db"
    await first_owner_is_told_to_wait(db, clock, http_mock)
    async with SqliteStore(db) as store:
        saved = await store.source_rate("shop")
    assert saved is not None and saved.rate == 2.5
    assert saved.paused_until is not None
    assert (saved.paused_until - clock.now()).total_seconds() == pytest.approx(30, abs=0.01)
    clock.advance(10)
    with capture_logs() as logs:
        slept = await next_owner_sends_two(db, clock, http_mock)
    assert slept[0] == pytest.approx(20, abs=0.01)  # what is left of the Retry-After
    # The second request is paced at the cut rate (the pacer counts from the last send).
    assert pytest.approx(1 / 2.5, abs=0.02) in slept[1:]
    (restored,) = [e for e in logs if e["event"] == "http.rate_restored"]
    assert (restored["rate"], restored["paused_for"]) == (2.5, pytest.approx(20, abs=0.01))


async def test_without_a_persisted_pace_the_new_client_does_not_wait(
    tmp_path: Path, clock: FakeClock, http_mock: aioresponses
) -> None:
    """The control: a database that never saw the 429 lets both requests go at once."""
    assert await next_owner_sends_two(tmp_path / "fresh.db", clock, http_mock) == []


class CountingRates:
    """A rate store in memory that counts saves."""

    def __init__(self) -> None:
        self.saved: list[SourceRate] = []

    async def source_rate(self, source: str) -> SourceRate | None:
        return self.saved[-1] if self.saved else None

    async def save_source_rate(self, rate: SourceRate) -> None:
        self.saved.append(rate)


async def test_changes_are_saved_at_once_then_at_most_every_interval(clock: FakeClock) -> None:
    """The first 429 is saved at once; a burst of them within `save_interval` adds no write
    until a request after the interval; what is left unsaved is written on close."""
    policy = RetryPolicy.from_settings(HttpSettings())
    adaptive = AdaptiveThrottle("s", clock, RateTuning(), policy, ceiling=10.0)
    rates = CountingRates()
    memory = RateMemory("s", rates, clock, policy, adaptive, save_interval=5.0)
    refused = Response(429, {"Retry-After": "1"}, "application/json", b"{}")
    await memory.acquire()
    memory.observe(refused)
    adaptive.observe(refused)
    await settle()
    assert [r.rate for r in rates.saved] == [7.5]  # the first change, at once
    for _ in range(4):  # more cuts within the interval: no write
        memory.observe(refused)
        adaptive.observe(refused)
        await memory.acquire()
    await settle()
    assert len(rates.saved) == 1
    clock.advance(5)
    await memory.acquire()  # the first request after the interval saves the latest pace
    await settle()
    assert len(rates.saved) == 2 and rates.saved[-1].rate == adaptive.rate.rate
    memory.observe(refused)  # within the next interval: written when the pool closes
    await memory.aclose()
    assert len(rates.saved) == 3 and rates.saved[-1].paused_until is not None


async def ac_owner_sends(
    db: Path, clock: FakeClock, http_mock: aioresponses, calls: int, counts: list[int]
) -> list[float]:
    """A pool and client for `ac` (a 10-call window, 3 left to others) on `db` send `calls`
    requests; the store answers with `counts` as its window's count. Their sleeps."""
    for used in counts:
        http_mock.get(ANY, payload={"items": []}, headers={"X-AC-Call-Limit": f"{used}/10"})
    clock.slept.clear()
    async with SqliteStore(db) as store, ClientPool(SETTINGS, clock, rates=store) as pool:
        window = CallLimitThrottle(clock, reserve=3)
        client = pool.client(name="ac", max_concurrency=1, request_timeout=5,
                             connect_timeout=5, throttles=[window])  # fmt: skip
        for _ in range(calls):
            assert (await client.get_json(URL, stats=RequestStats())).status == 200
    return list(clock.slept)


async def test_a_restarted_process_resumes_the_call_window_it_left(
    tmp_path: Path, clock: FakeClock, http_mock: aioresponses
) -> None:
    """A process spends its 7 calls of an AmeriCommerce window and stops; the next one, on the
    same database 2 s later, waits the 8 s left of that window before its first call, instead
    of taking the 7 calls again (the store would count them against the other apps' 3)."""
    db = tmp_path / "syncd.db"
    assert await ac_owner_sends(db, clock, http_mock, 7, list(range(1, 8))) == []
    async with SqliteStore(db) as store:
        saved = await store.source_rate("ac")
    assert saved is not None and saved.window is not None
    assert (saved.window.limit, saved.window.calls) == (10, 7)
    assert (saved.window.ends_at - clock.now()).total_seconds() == pytest.approx(10, abs=0.01)
    clock.advance(2)
    slept = await ac_owner_sends(db, clock, http_mock, 1, [1])
    assert slept and slept[0] == pytest.approx(8, abs=0.2)  # 0.1 s more for the hosts' clocks


async def test_a_window_that_has_ended_is_not_resumed(
    tmp_path: Path, clock: FakeClock, http_mock: aioresponses
) -> None:
    """The control: started after that window ended, the next process sends at once."""
    db = tmp_path / "syncd.db"
    await ac_owner_sends(db, clock, http_mock, 7, list(range(1, 8)))
    clock.advance(11)
    assert await ac_owner_sends(db, clock, http_mock, 3, [1, 2, 3]) == []
