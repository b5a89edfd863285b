"""The Adobe side's token-bucket throttle: 429, Retry-After in both formats, the injected clock."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

import aiohttp

from syncd.emulator import AdobeConfig, RateLimitConfig
from tests.clocks import FakeClock
from tests.emulator.emulator_helpers import AdobeCaller, StartEmulator, criteria


async def test_burst_then_429_with_retry_after_seconds(
    start: StartEmulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """After `burst` calls the bucket is empty: 429, Retry-After in whole seconds, then recovery."""
    emu = await start(adobe=AdobeConfig(products=5, rate_limit=RateLimitConfig(rate=0.5, burst=3)))
    caller = AdobeCaller(emu, session)
    headers = await caller.headers()
    for _ in range(3):
        assert (await caller.get(criteria(page_size=1), headers)).status == 200
    refused = await caller.get(criteria(page_size=1), headers)
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "2"
    assert refused.json()["message"] == "Too many requests"
    assert emu.adobe.stats.rate_limited == 1
    clock.advance(1.9)
    assert (await caller.get(criteria(page_size=1), headers)).status == 429
    assert emu.adobe.stats.rate_limited == 2
    clock.advance(0.2)
    assert (await caller.get(criteria(page_size=1), headers)).status == 200
    assert emu.adobe.stats.requests == 6


async def test_retry_after_minimum_is_one_second(
    start: StartEmulator, session: aiohttp.ClientSession
) -> None:
    """A sub-second wait is still announced as 1."""
    emu = await start(adobe=AdobeConfig(products=5, rate_limit=RateLimitConfig(rate=50, burst=1)))
    caller = AdobeCaller(emu, session)
    headers = await caller.headers()
    await caller.get(criteria(page_size=1), headers)
    assert (await caller.get(criteria(page_size=1), headers)).headers["Retry-After"] == "1"


async def test_retry_after_as_http_date(
    start: StartEmulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """retry_after_format='http-date' sends the HTTP-date at which a token will be there."""
    emu = await start(
        adobe=AdobeConfig(
            products=5,
            rate_limit=RateLimitConfig(rate=0.25, burst=1),
            retry_after_format="http-date",
        )
    )
    caller = AdobeCaller(emu, session)
    headers = await caller.headers()
    await caller.get(criteria(page_size=1), headers)
    refused = await caller.get(criteria(page_size=1), headers)
    assert refused.status == 429
    when = parsedate_to_datetime(refused.headers["Retry-After"])
    assert (when - clock.now()).total_seconds() == 4


async def test_token_endpoint_is_not_throttled(
    start: StartEmulator, session: aiohttp.ClientSession
) -> None:
    """The bucket guards the API, not IMS."""
    emu = await start(adobe=AdobeConfig(products=5, rate_limit=RateLimitConfig(rate=0.1, burst=1)))
    caller = AdobeCaller(emu, session)
    for _ in range(3):
        assert (await caller.token_answer()).status == 200
