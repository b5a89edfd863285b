"""The emulator's lifecycle, serve(), the request log and stats, and network latency."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from syncd.emulator import AdobeConfig, AmeriCommerceConfig, Emulator, EmulatorConfig, serve
from tests.clocks import FakeClock
from tests.emulator.emulator_helpers import AdobeCaller, StartEmulator, criteria


async def test_lifecycle_misuse_is_explained() -> None:
    """url before start and a second start raise RuntimeError; non-loopback hosts are refused."""
    emulator = Emulator(EmulatorConfig(adobe=AdobeConfig(products=1)))
    with pytest.raises(RuntimeError, match="async with"):
        _ = emulator.url
    async with emulator:
        assert emulator.url.startswith("http://127.0.0.1:")
        assert emulator.ims_token_url == emulator.url + "/ims/token/v3"
        with pytest.raises(RuntimeError, match="already running"):
            await emulator.start()
    with pytest.raises(RuntimeError, match="closed"):
        await emulator.start()
    with pytest.raises(ValueError, match="loopback"):
        Emulator(host="0.0.0.0")  # noqa: S104 - the point is that it is refused


async def test_serve_runs_until_cancelled(session: aiohttp.ClientSession, clock: FakeClock) -> None:
    """serve() hands the running emulator to `ready` and stops cleanly when cancelled."""
    ready: asyncio.Queue[Emulator] = asyncio.Queue()
    config = EmulatorConfig(
        adobe=AdobeConfig(products=3), americommerce=AmeriCommerceConfig(products=3)
    )
    task = asyncio.create_task(serve(config, clock=clock, ready=ready.put_nowait))
    emulator = await asyncio.wait_for(ready.get(), 5)
    caller = AdobeCaller(emulator, session)
    assert (await caller.get(criteria(page_size=1))).status == 200
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(aiohttp.ClientConnectionError):
        await caller.token_answer()


async def test_log_records_each_request_and_reset(
    adobe: AdobeCaller, emu: Emulator, clock: FakeClock
) -> None:
    """The log keeps method, path, query, status and monotonic time; reset() clears everything."""
    headers = await adobe.headers()
    clock.advance(5)
    await adobe.get(criteria(page_size=10, page=3), headers)
    stats = emu.adobe.stats
    token, listing = list(stats.log)
    assert (token.method, token.path, token.status) == ("POST", "/ims/token/v3", 200)
    assert listing.query["searchCriteria[currentPage]"] == "3"
    assert (listing.status, listing.at) == (200, clock.monotonic())
    assert stats.requests_to("/rest/V1/products") == [listing]
    assert (stats.requests, stats.token_requests) == (1, 1)
    stats.reset()
    assert (stats.requests, stats.token_requests, len(stats.log)) == (0, 0, 0)


async def test_latency_is_a_real_delay(
    start: StartEmulator, session: aiohttp.ClientSession
) -> None:
    """latency sleeps for real on every request, whatever the clock."""
    emu = await start(adobe=AdobeConfig(products=2, latency=0.05))
    caller = AdobeCaller(emu, session)
    headers = await caller.headers()
    began = time.monotonic()
    await caller.get(criteria(page_size=1), headers)
    assert time.monotonic() - began >= 0.05


async def test_ac_count_cap_and_filtered_next_page(
    start: StartEmulator, session: aiohttp.ClientSession
) -> None:
    """max_count caps count; next_page keeps the filters so following it stays in the query."""
    config = AmeriCommerceConfig(products=60, static_tokens=("t",), call_limit=1000, max_count=7)
    emu = await start(americommerce=config)
    headers = {"X-AC-Auth-Token": "t"}
    url: str | None = emu.url + "/api/v1/products?count=50&id=gt:10+AND+lte:30&sort=-id"
    ids: list[int] = []
    while url:
        async with session.get(url, headers=headers) as response:
            body = await response.json()
        assert len(body["products"]) <= 7
        ids += [p["id"] for p in body["products"]]
        url = body.get("next_page")
    assert ids == list(range(30, 10, -1))


async def test_before_request_runs_at_that_exact_request(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """An action scheduled before the 2nd API request runs once, just before it is served."""
    config = EmulatorConfig(adobe=AdobeConfig(products=5), seed=1)
    async with Emulator(config, clock=clock) as emu:
        caller = AdobeCaller(emu, session)
        headers = await caller.headers()
        seen: list[int] = []
        emu.adobe.before_request(2, lambda: seen.append(emu.adobe.stats.requests))
        emu.adobe.before_request(
            2, lambda: emu.adobe.catalog.delete(next(emu.adobe.catalog.skus()))
        )
        totals = [
            (await caller.get(criteria(page_size=1), headers)).json()["total_count"]
            for _ in range(3)
        ]
        assert totals == [5, 4, 4] and seen == [2]
        with pytest.raises(ValueError, match="n >= 1"):
            emu.adobe.before_request(0, lambda: None)
