"""The per-source HTTP client against scripted answers (aioresponses) and a fake clock."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from email.utils import format_datetime

import aiohttp
import pytest
import structlog
from aioresponses import CallbackResult, aioresponses
from structlog.testing import capture_logs

from syncd.auth import AccessToken, TokenCache
from syncd.config import HttpSettings
from syncd.errors import (
    AuthError,
    HttpStatusError,
    RateLimitedError,
    ResponseError,
    RetryBudgetExhaustedError,
    ServerError,
    TransportError,
)
from syncd.http import (
    ClientPool,
    RequestStats,
    Response,
    RetryBudget,
    SourceAuth,
    SourceClient,
)
from syncd.store import SqliteStore
from tests.clocks import FakeClock, ManualClock
from tests.conftest import settle

URL = "http://127.0.0.1:9/rest/V1/products"
PATTERN = re.compile(r"^http://127\.0\.0\.1:9/rest/V1/products.*$")


class SequenceProvider:
    """Issues token-1, token-2, ... and counts requests."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls = 0

    @property
    def cache_key(self) -> str:
        return "seq"

    @property
    def refresh_margin(self) -> float:
        return 60

    async def obtain(self, previous: AccessToken | None) -> AccessToken:
        self.calls += 1
        now = self.clock.now()
        return AccessToken(f"token-{self.calls}", now + timedelta(hours=1), now)

    def auth_headers(self, token: AccessToken) -> dict[str, str]:
        return {"Authorization": f"Bearer {token.value}"}


@pytest.fixture
async def pool(clock: FakeClock) -> AsyncIterator[ClientPool]:
    async with ClientPool(HttpSettings(max_attempts=4, backoff_base=1, backoff_cap=8), clock,
                          random.Random(1)) as opened:  # fmt: skip
        yield opened


def make_client(
    pool: ClientPool, auth: SourceAuth | None = None, concurrency: int = 4
) -> SourceClient:
    return pool.client(name="s", max_concurrency=concurrency, request_timeout=5,
                       connect_timeout=5, auth=auth)  # fmt: skip


async def test_retry_after_seconds_pauses_then_succeeds(
    pool: ClientPool, clock: FakeClock, http_mock: aioresponses
) -> None:
    """A 429 with `Retry-After: 7` waits 7 s (on the clock) and retries."""
    client, stats = make_client(pool), RequestStats()
    mock = http_mock
    mock.get(PATTERN, status=429, headers={"Retry-After": "7"}, payload={"message": "slow"})
    mock.get(PATTERN, payload={"items": []})
    start = clock.monotonic()
    response = await client.get_json(URL, stats=stats)
    assert response.data == {"items": []}
    assert clock.monotonic() - start == pytest.approx(7)
    assert (stats.requests, stats.retries, stats.rate_limited) == (2, 1, 1)


async def test_retry_after_http_date_is_honoured(
    pool: ClientPool, clock: FakeClock, http_mock: aioresponses
) -> None:
    """A 429 whose Retry-After is an HTTP-date waits until that date."""
    client, stats = make_client(pool), RequestStats()
    when = format_datetime(clock.now() + timedelta(seconds=42), usegmt=True)
    mock = http_mock
    mock.get(PATTERN, status=429, headers={"Retry-After": when})
    mock.get(PATTERN, payload={"ok": True})
    start = clock.monotonic()
    await client.get_json(URL, stats=stats)
    assert clock.monotonic() - start == pytest.approx(42)


async def test_429_without_header_uses_default(
    pool: ClientPool, clock: FakeClock, http_mock: aioresponses
) -> None:
    """No Retry-After: the configured default pause (5 s)."""
    client, stats = make_client(pool), RequestStats()
    mock = http_mock
    mock.get(PATTERN, status=429)
    mock.get(PATTERN, payload={})
    start = clock.monotonic()
    await client.get_json(URL, stats=stats)
    assert clock.monotonic() - start == pytest.approx(5)


async def test_429_pauses_every_worker_of_the_source(http_mock: aioresponses) -> None:
    """One worker's 429 holds a second worker, which had not sent yet, until Retry-After is over."""
    clock = ManualClock()
    calls: list[float] = []

    def answer(url: object, **kwargs: object) -> CallbackResult:
        calls.append(clock.monotonic())
        if len(calls) == 1:
            return CallbackResult(status=429, headers={"Retry-After": "30"})
        return CallbackResult(status=200, payload={})

    http_mock.get(PATTERN, callback=answer, repeat=True)
    # The gate alone: the adaptive pacing after a 429 is tested in test_throttle.py.
    async with ClientPool(HttpSettings(adaptive_rate=False), clock, random.Random(1)) as pool:
        client = make_client(pool)
        first = asyncio.create_task(client.get_json(URL, stats=RequestStats()))
        await settle()
        assert len(calls) == 1  # the 429 arrived; the gate is closed for 30 s
        second = asyncio.create_task(client.get_json(URL, stats=RequestStats()))
        await settle()
        clock.advance(29)
        await settle()
        assert len(calls) == 1, "a worker sent during another worker's Retry-After pause"
        clock.advance(1)
        await asyncio.gather(first, second)
    assert len(calls) == 3
    assert min(calls[1:]) >= calls[0] + 30


async def test_shared_gate_blocks_other_workers_during_a_pause(
    pool: ClientPool, clock: FakeClock, http_mock: aioresponses
) -> None:
    """While the gate is closed by one worker's 429, a second worker does not send at all."""
    client = make_client(pool)
    client.gate.pause(30)
    sent: list[float] = []

    def answer(url: object, **kwargs: object) -> CallbackResult:
        sent.append(clock.monotonic())
        return CallbackResult(status=200, payload={})

    start = clock.monotonic()
    mock = http_mock
    mock.get(PATTERN, callback=answer, repeat=True)
    await asyncio.gather(*(client.get_json(URL, stats=RequestStats()) for _ in range(3)))
    assert min(sent) >= start + 30


async def test_5xx_backs_off_then_gives_up(
    pool: ClientPool, clock: FakeClock, http_mock: aioresponses
) -> None:
    """503s are retried with bounded jittered backoff up to max_attempts, then ServerError."""
    client, stats = make_client(pool), RequestStats()
    mock = http_mock
    with capture_logs() as logs:
        mock.get(PATTERN, status=503, payload={"message": "maintenance"}, repeat=True)
        with pytest.raises(ServerError, match="HTTP 503: maintenance"):
            await client.get_json(URL, stats=stats)
    assert stats.requests == 4 and stats.retries == 3
    assert all(0 <= d <= 8 for d in clock.slept)
    retries = [e for e in logs if e["event"] == "http.retry_scheduled"]
    assert [e["attempt"] for e in retries] == [1, 2, 3]


async def test_server_disconnect_is_retried(pool: ClientPool, http_mock: aioresponses) -> None:
    """The keep-alive race (ServerDisconnectedError) on an idempotent GET is retried."""
    client, stats = make_client(pool), RequestStats()
    mock = http_mock
    mock.get(PATTERN, exception=aiohttp.ServerDisconnectedError())
    mock.get(PATTERN, payload={"items": [1]})
    response = await client.get_json(URL, stats=stats)
    assert response.data == {"items": [1]} and stats.retries == 1


async def test_a_given_up_network_fault_keeps_its_cause(
    pool: ClientPool, http_mock: aioresponses
) -> None:
    """The TransportError raised after the last attempt carries aiohttp's own error as its cause."""
    client = make_client(pool)
    http_mock.get(PATTERN, exception=aiohttp.ServerDisconnectedError(), repeat=True)
    with pytest.raises(TransportError, match="ServerDisconnectedError") as raised:
        await client.get_json(URL, stats=RequestStats())
    assert isinstance(raised.value.__cause__, aiohttp.ServerDisconnectedError)


async def test_html_error_page_names_url_and_status(
    pool: ClientPool, http_mock: aioresponses
) -> None:
    """A proxy's HTML page instead of JSON becomes a clear error naming URL and status."""
    client = make_client(pool)
    html = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    mock = http_mock
    mock.get(PATTERN, status=200, body=html, content_type="text/html", repeat=True)
    with pytest.raises(ResponseError) as caught:
        await client.get_json(URL, stats=RequestStats())
    assert URL in str(caught.value) and "HTTP 200" in str(caught.value)
    assert "HTML page" in str(caught.value)


async def test_4xx_is_not_retried(pool: ClientPool, http_mock: aioresponses) -> None:
    """A 400 with a Magento message fails at once with that message."""
    client, stats = make_client(pool), RequestStats()
    mock = http_mock
    mock.get(PATTERN, status=400, payload={"message": "bad field"}, repeat=True)
    with pytest.raises(HttpStatusError, match="HTTP 400: bad field"):
        await client.get_json(URL, stats=stats)
    assert stats.requests == 1


async def test_401_refreshes_once_and_retries(
    pool: ClientPool, store: SqliteStore, clock: FakeClock, http_mock: aioresponses
) -> None:
    """A 401 invalidates the token that was rejected and retries once with a fresh one."""
    provider = SequenceProvider(clock)
    client = make_client(pool, SourceAuth(provider, TokenCache(store, clock), "s"))
    seen: list[str] = []

    def answer(url: object, **kwargs: object) -> CallbackResult:
        auth = kwargs["headers"]["Authorization"]  # type: ignore[index]
        seen.append(auth)
        if auth == "Bearer token-1":
            return CallbackResult(status=401, payload={"message": "The consumer isn't authorized"})
        return CallbackResult(status=200, payload={"ok": 1})

    mock = http_mock
    mock.get(PATTERN, callback=answer, repeat=True)
    response = await client.get_json(URL, stats=RequestStats())
    assert response.data == {"ok": 1}
    assert seen == ["Bearer token-1", "Bearer token-2"]
    events = [e.event for e in await store.token_events("s")]
    assert events == ["refreshed", "invalidated", "issued"]


async def test_second_401_fails_clearly(
    pool: ClientPool, store: SqliteStore, clock: FakeClock, http_mock: aioresponses
) -> None:
    """A fresh token refused again is an AuthError, not a loop."""
    provider = SequenceProvider(clock)
    client = make_client(pool, SourceAuth(provider, TokenCache(store, clock), "s"))
    mock = http_mock
    mock.get(PATTERN, status=401, payload={"message": "The consumer isn't authorized"}, repeat=True)
    with pytest.raises(AuthError, match="401 twice"):
        await client.get_json(URL, stats=RequestStats())
    assert provider.calls == 2


async def test_concurrent_401s_cause_one_refresh(
    pool: ClientPool, store: SqliteStore, clock: FakeClock, http_mock: aioresponses
) -> None:
    """Many workers rejected with the same token trigger exactly one new token request."""
    provider = SequenceProvider(clock)
    client = make_client(pool, SourceAuth(provider, TokenCache(store, clock), "s"), concurrency=20)

    def answer(url: object, **kwargs: object) -> CallbackResult:
        ok = kwargs["headers"]["Authorization"] != "Bearer token-1"  # type: ignore[index]
        return CallbackResult(status=200 if ok else 401, payload={})

    http_mock.get(PATTERN, callback=answer, repeat=True)
    stats = RequestStats()
    answers = await asyncio.gather(*(client.get_json(URL, stats=stats) for _ in range(20)))
    assert [a.status for a in answers] == [200] * 20
    assert provider.calls == 2  # token-1 for the burst, then one refresh after its 401s
    events = [e.event for e in await store.token_events("s")]
    assert events.count("invalidated") == 1


class RecordingThrottle:
    """Counts admissions and remembers what each answer was (None: no answer)."""

    def __init__(self) -> None:
        self.acquired = 0
        self.observed: list[int | None] = []

    async def acquire(self) -> None:
        self.acquired += 1

    def observe(self, response: Response | None) -> None:
        self.observed.append(None if response is None else response.status)

    def release(self) -> None:
        self.observed.append(-1)


async def test_throttles_see_every_attempt_once_even_without_an_answer(
    pool: ClientPool, http_mock: aioresponses
) -> None:
    """Each attempt is admitted once and reported once: a reset reports None, a 503 its status."""
    throttle = RecordingThrottle()
    client = pool.client(name="s", max_concurrency=4, request_timeout=5, connect_timeout=5,
                         throttles=[throttle])  # fmt: skip
    http_mock.get(PATTERN, exception=aiohttp.ServerDisconnectedError())
    http_mock.get(PATTERN, status=503, payload={"message": "busy"})
    http_mock.get(PATTERN, payload={"items": []})
    await client.get_json(URL, stats=RequestStats())
    assert throttle.acquired == 3
    assert throttle.observed == [None, 503, 200]


async def test_a_spent_retry_budget_stops_retrying_at_once(
    pool: ClientPool, http_mock: aioresponses
) -> None:
    """Past the run's budget a failure is not retried: one clear error says why."""
    client = make_client(pool)
    stats = RequestStats(budget=RetryBudget(share=0.0, minimum=2))
    http_mock.get(PATTERN, status=503, payload={"message": "maintenance"}, repeat=True)
    with pytest.raises(RetryBudgetExhaustedError) as caught:
        await client.get_json(URL, stats=stats)
    assert (stats.requests, stats.retries) == (3, 2)
    message = str(caught.value)
    assert message.startswith("retry budget exhausted: 2 retries after failures for 3 requests")
    assert "HTTP 503: maintenance" in message and "\n" not in message


async def test_429s_do_not_spend_the_retry_budget(
    pool: ClientPool, http_mock: aioresponses
) -> None:
    """Rate-limit answers are paced, not budgeted: a zero budget still rides out 429s."""
    client = make_client(pool)
    stats = RequestStats(budget=RetryBudget(share=0.0, minimum=0))
    for _ in range(3):
        http_mock.get(PATTERN, status=429, headers={"Retry-After": "1"})
    http_mock.get(PATTERN, payload={"items": []})
    response = await client.get_json(URL, stats=stats)
    assert response.data == {"items": []}
    assert (stats.retries, stats.rate_limited, stats.failure_retries) == (3, 3, 0)


async def test_a_throttled_token_endpoint_pauses_only_its_own_sources(
    http_mock: aioresponses,
) -> None:
    """A 429 from one token endpoint closes that endpoint's gate; another origin's stays open."""
    clock = ManualClock()
    slow = "http://127.0.0.1:7/ims/token/v3"
    other = "http://127.0.0.2:7/ims/token/v3"
    http_mock.post(slow, status=429, headers={"Retry-After": "30"})
    http_mock.post(slow, payload={"access_token": "a"})
    http_mock.post(other, payload={"access_token": "b"})
    async with ClientPool(HttpSettings(adaptive_rate=False), clock, random.Random(1)) as pool:
        throttled = asyncio.create_task(pool.post_form(slow, {"grant_type": "x"}))
        await settle()
        answer = await asyncio.wait_for(pool.post_form(other, {"grant_type": "x"}), timeout=5)
        assert answer.status == 200 and not throttled.done()
        clock.advance(30)
        assert (await throttled).status == 200


async def test_429s_do_not_use_up_the_attempts_for_failures(
    pool: ClientPool, http_mock: aioresponses
) -> None:
    """Four 429s then a 503 (max_attempts 4): the 503 is the first failure and is retried."""
    client, stats = make_client(pool), RequestStats()
    for _ in range(4):
        http_mock.get(PATTERN, status=429, headers={"Retry-After": "1"})
    http_mock.get(PATTERN, status=503, payload={"message": "busy"})
    http_mock.get(PATTERN, payload={"items": []})
    response = await client.get_json(URL, stats=stats)
    assert response.data == {"items": []}
    assert (stats.requests, stats.rate_limited, stats.failure_retries) == (6, 4, 1)


async def test_magento_placeholders_are_filled_from_parameters(
    pool: ClientPool, http_mock: aioresponses
) -> None:
    """Magento's `%name` / `%1` placeholders become the values its `parameters` give."""
    client = make_client(pool)
    http_mock.get(
        PATTERN,
        status=400,
        payload={"message": "Maximum SearchCriteria pageSize is %max", "parameters": {"max": 50}},
    )
    http_mock.get(
        PATTERN,
        status=400,
        payload={"message": "%1 is %10 not %1", "parameters": ["a", 2, 3, 4, 5, 6, 7, 8, 9, "j"]},
    )
    with pytest.raises(HttpStatusError, match=r"HTTP 400: Maximum SearchCriteria pageSize is 50$"):
        await client.get_json(URL, stats=RequestStats())
    with pytest.raises(HttpStatusError, match=r"HTTP 400: a is j not a$"):
        await client.get_json(URL, stats=RequestStats())


async def test_token_endpoint_lines_keep_the_runs_source(
    pool: ClientPool, http_mock: aioresponses
) -> None:
    """A retried token request logs the source of the run it works for, not the endpoint's name."""
    url = "http://127.0.0.1:9/ims/token/v3"
    http_mock.post(url, status=503, payload={"error": "down"})
    http_mock.post(url, payload={"access_token": "a"})
    with capture_logs() as logs, structlog.contextvars.bound_contextvars(source="shop"):
        answer = await pool.post_form(url, {"grant_type": "client_credentials"})
    assert answer.status == 200
    (retry,) = [e for e in logs if e["event"] == "http.retry_scheduled"]
    assert retry["source"] == "shop" and retry["url"] == url


def test_latency_summary_of_a_run() -> None:
    """p50 / p95 / max in milliseconds from every response time; nothing sent, no summary."""
    stats = RequestStats()
    assert stats.latency_summary() == {}
    for ms in [*range(10, 200, 10), 1000]:
        stats.observe(ms / 1000)
    assert stats.latency_summary() == {"p50_ms": 110.0, "p95_ms": 1000.0, "max_ms": 1000.0}


async def test_retry_after_zero_is_not_a_hot_loop(
    pool: ClientPool, clock: FakeClock, http_mock: aioresponses
) -> None:
    """A store answering 429 with `Retry-After: 0` forever: the pauses still grow (1, 2, 4, 8 s,
    capped), and the request gives up at the retry deadline after a few dozen tries, not
    thousands."""
    client, stats = make_client(pool), RequestStats()
    http_mock.get(PATTERN, status=429, headers={"Retry-After": "0"}, repeat=True)
    with pytest.raises(RateLimitedError):
        await client.get_json(URL, stats=stats)
    assert 30 <= stats.requests <= 45
    assert clock.slept[:5] == [1.0, 2.0, 4.0, 8.0, 8.0]
