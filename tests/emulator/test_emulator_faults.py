"""Injected faults on both platforms: each kind, and when faults fire (times, after, probability)."""

from __future__ import annotations

import errno
import json
import time
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from syncd.emulator import AmeriCommerceConfig, Emulator, Fault
from syncd.emulator.platform import PlatformEmulator
from tests.clocks import FakeClock
from tests.emulator.emulator_helpers import AdobeCaller, Answer, StartEmulator, criteria

Call = Callable[[], Awaitable[Answer]]
TOKEN = "console-token"


@pytest.fixture
async def emu(start: StartEmulator) -> Emulator:
    """Both platforms, the AmeriCommerce one with an admin-console token."""
    return await start(
        americommerce=AmeriCommerceConfig(products=50, static_tokens=(TOKEN,), call_limit=10_000)
    )


@pytest.fixture(params=["adobe", "americommerce"])
async def target(
    request: pytest.FixtureRequest, emu: Emulator, session: aiohttp.ClientSession
) -> tuple[PlatformEmulator, Call]:
    """A platform and a function making one product API call to it."""
    if request.param == "adobe":
        caller = AdobeCaller(emu, session)
        headers = await caller.headers()

        async def adobe_call() -> Answer:
            return await caller.get(criteria(page_size=20, sort=[("entity_id", "ASC")]), headers)

        return emu.adobe, adobe_call

    async def ac_call() -> Answer:
        url = emu.url + "/api/v1/products?count=20"
        headers = {"X-AC-Auth-Token": TOKEN, "Cache-Control": "no-cache"}
        async with session.get(url, headers=headers) as response:
            return Answer(response.status, response.headers, await response.text())

    return emu.americommerce, ac_call


async def test_status_fault_answers_json_error_once(target: tuple[PlatformEmulator, Call]) -> None:
    """A status fault answers that status with a JSON error body, then requests succeed again."""
    platform, call = target
    platform.faults.add(Fault("status", status=503))
    failed = await call()
    assert failed.status == 503
    assert failed.headers["Content-Type"].startswith("application/json")
    assert isinstance(failed.json(), dict)
    assert (await call()).status == 200
    assert platform.stats.faults_injected == 1
    assert platform.stats.requests == 2


async def test_status_429_fault_has_retry_after(target: tuple[PlatformEmulator, Call]) -> None:
    """An injected 429 carries Retry-After like a real throttle."""
    platform, call = target
    platform.faults.add(Fault("status", status=429))
    failed = await call()
    assert failed.status == 429
    assert int(failed.headers["Retry-After"]) >= 1


async def test_html_fault_is_a_proxy_page(target: tuple[PlatformEmulator, Call]) -> None:
    """An html fault answers a 502 HTML page instead of JSON."""
    platform, call = target
    platform.faults.add(Fault("html", status=502))
    failed = await call()
    assert failed.status == 502
    assert failed.headers["Content-Type"].startswith("text/html")
    assert "<html>" in failed.text


async def test_slow_fault_delays_a_normal_answer(target: tuple[PlatformEmulator, Call]) -> None:
    """A slow fault sleeps for real before answering normally."""
    platform, call = target
    platform.faults.add(Fault("slow", delay=0.2))
    began = time.monotonic()
    answer = await call()
    assert time.monotonic() - began >= 0.2
    assert answer.status == 200
    answer.json()


async def test_truncated_fault_cuts_the_body(target: tuple[PlatformEmulator, Call]) -> None:
    """A truncated fault keeps the status but the JSON body stops half way."""
    platform, call = target
    whole = await call()
    platform.faults.add(Fault("truncated"))
    cut = await call()
    assert cut.status == 200
    assert whole.text.startswith(cut.text) and len(cut.text) < len(whole.text)
    with pytest.raises(json.JSONDecodeError):
        cut.json()


async def test_malformed_fault_is_garbage_with_200(target: tuple[PlatformEmulator, Call]) -> None:
    """A malformed fault answers 200 with a body that is not JSON."""
    platform, call = target
    platform.faults.add(Fault("malformed"))
    answer = await call()
    assert answer.status == 200
    with pytest.raises(json.JSONDecodeError):
        answer.json()


async def test_disconnect_fault_drops_the_connection(target: tuple[PlatformEmulator, Call]) -> None:
    """A disconnect fault closes the connection without any response."""
    platform, call = target
    # aiohttp silently retries an idempotent request once when a reused connection drops.
    platform.faults.add(Fault("disconnect", times=2))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await call()
    platform.faults.clear()
    assert platform.stats.log[-1].status == 0
    assert (await call()).status == 200


async def test_after_and_times(target: tuple[PlatformEmulator, Call]) -> None:
    """after skips the first matching requests; times=None keeps firing until cleared."""
    platform, call = target
    platform.faults.add(Fault("status", status=500, after=2, times=None))
    statuses = [(await call()).status for _ in range(5)]
    assert statuses == [200, 200, 500, 500, 500]
    platform.faults.clear()
    assert (await call()).status == 200


async def test_probability_uses_the_seeded_rng(target: tuple[PlatformEmulator, Call]) -> None:
    """probability=0.5 hits some requests and spares others."""
    platform, call = target
    platform.faults.add(Fault("status", status=503, times=None, probability=0.5))
    statuses = [(await call()).status for _ in range(30)]
    assert 5 < statuses.count(503) < 25
    assert statuses.count(200) == 30 - statuses.count(503)


async def test_token_target_hits_the_token_endpoint_only(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    """A fault aimed at the token endpoint leaves the API alone."""
    caller = AdobeCaller(emu, session)
    headers = await caller.headers()
    emu.adobe.faults.add(Fault("status", target="token", status=503))
    assert (await caller.get(criteria(page_size=1), headers)).status == 200
    failed = await caller.token_answer()
    assert failed.status == 503
    assert failed.json()["error"] == "server_error"
    assert (await caller.token_answer()).status == 200
    assert emu.adobe.stats.token_requests == 3


async def test_reset_fault_aborts_with_rst(target: tuple[PlatformEmulator, Call]) -> None:
    """A reset fault answers nothing and aborts the connection: the client sees ECONNRESET."""
    platform, call = target
    # Twice: aiohttp retries an idempotent request once on a fresh connection by itself.
    platform.faults.add(Fault("reset", times=2))
    with pytest.raises(aiohttp.ClientOSError) as caught:
        await call()
    assert caught.value.errno == errno.ECONNRESET
    assert [r.status for r in platform.stats.log][-2:] == [0, 0]
    assert (await call()).status == 200


async def test_reused_only_fault_spares_fresh_connections(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    """A reused_only fault hits the second request of a kept-alive connection, never a new one."""
    caller = AdobeCaller(emu, session)
    headers = await caller.headers()  # the token request opened the connection
    emu.adobe.faults.add(Fault("disconnect", reused_only=True))
    async with aiohttp.ClientSession() as fresh:
        first = await AdobeCaller(emu, fresh).get(criteria(page_size=1), headers)
        assert first.status == 200 and len(emu.adobe.faults) == 1
        # Reused: the fault fires; aiohttp retries once on a new connection, which it spares.
        second = await AdobeCaller(emu, fresh).get(criteria(page_size=1), headers)
    assert second.status == 200
    assert [r.status for r in emu.adobe.stats.log] == [200, 200, 0, 200]
    assert len(emu.adobe.faults) == 0


async def test_duration_fault_is_an_outage_in_emulator_time(
    emu: Emulator, clock: FakeClock, session: aiohttp.ClientSession
) -> None:
    """A fault with a duration fires on every request until that much emulator time has passed."""
    caller = AdobeCaller(emu, session)
    emu.adobe.faults.add(Fault("status", target="token", times=None, duration=30))
    assert (await caller.token_answer()).status == 503
    clock.advance(29)
    assert (await caller.token_answer()).status == 503
    clock.advance(1)
    assert (await caller.token_answer()).status == 200
    assert len(emu.adobe.faults) == 0


async def test_json_fault_answers_its_body_with_200(target: tuple[PlatformEmulator, Call]) -> None:
    """A json fault answers 200 with the given (wrongly shaped) JSON body, once."""
    platform, call = target
    platform.faults.add(Fault("json", body='{"items": [null], "total_count": 1}'))
    answer = await call()
    assert answer.status == 200 and answer.json() == {"items": [None], "total_count": 1}
    assert answer.headers["Content-Type"].startswith("application/json")
    assert (await call()).json() != answer.json()
    with pytest.raises(ValueError, match="needs the body"):
        Fault("json")
