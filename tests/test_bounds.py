"""Bounded by construction: what a runaway or hostile answer costs is capped before it is paid.

Body size, catalog size, JSON nesting and header values each have a limit that turns into one
clear, non-retried error (or, for a header, "absent"), never an internal error or unbounded memory.
"""

from __future__ import annotations

import gzip
import random
import tracemalloc
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from datetime import timedelta
from pathlib import Path
from typing import cast

import pytest
from aiohttp import web
from aioresponses import CallbackResult, aioresponses

from syncd import codec
from syncd.auth import AccessToken, EndpointResponse, TokenCache
from syncd.config import HttpSettings
from syncd.emulator import AdobeConfig, AmeriCommerceConfig, Emulator, EmulatorConfig, Fault
from syncd.errors import HttpStatusError, ResponseError, SourceError
from syncd.http import ClientPool, RequestStats, SourceAuth, parse_retry_after
from syncd.http.call_limit import CallLimitThrottle, parse_call_limit
from syncd.http.client import parse_content_length
from syncd.http.retry import ascii_int
from syncd.runtime import Runtime
from syncd.sources.adobe_commerce import AdobeCommerceSource, to_record
from syncd.sources.base import Page, as_int
from syncd.sources.fanout import fetch_concurrently
from syncd.store import SqliteStore
from syncd.wiring import build_source
from tests.clocks import FakeClock
from tests.support import ac_source, adobe_source, query, settings_for

URL = "http://127.0.0.1:9/api/v1/products"
MIB = 1024 * 1024
BOMB = b"[" * 100_000 + b"]" * 100_000


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.fixture
async def pool(clock: FakeClock) -> AsyncIterator[ClientPool]:
    settings = HttpSettings(max_attempts=4, backoff_base=1, backoff_cap=8, max_body_size=4096)
    async with ClientPool(settings, clock, random.Random(1)) as opened:
        yield opened


# -- headers: ASCII digits only ----------------------------------------------------------------


@pytest.mark.parametrize("value", ["²", "١٢", "1²", "+5", "-1", "1.5", "", " ", "9" * 19, "0x10"])
def test_header_numbers_are_ascii_digits_or_absent(value: str) -> None:
    """Every header number parser treats a value that is not plain ASCII digits as absent."""
    assert ascii_int(value) is None
    assert parse_content_length(value) is None
    assert parse_call_limit(f"{value}/10") is None and parse_call_limit(f"3/{value}") is None


def test_retry_after_takes_ascii_seconds_or_a_date() -> None:
    """`Retry-After: ²` is unreadable (absent), not an internal error; good values still work."""
    clock = FakeClock()
    for weird in ("²", "١٢", "9" * 5000, "Mon, 99 Foo 99999 99:99:99 GMT", "Fri, 31 Dec 9999"):
        assert parse_retry_after(weird, clock.now()) is None
    assert parse_retry_after(" 12 ", clock.now()) == 12.0
    assert parse_call_limit(" 7 / 10 ") == (7, 10)


@pytest.mark.parametrize("value", ["²", "-3", "1e3", "9" * 5000, "--5", "-", "- 5", "+-5"])
def test_json_numbers_as_text_are_ascii_digits_or_nothing(value: str) -> None:
    """A total_count or id sent as text is read only from ASCII digits (and a sign)."""
    assert as_int(value) == (-3 if value == "-3" else None)


async def test_a_weird_retry_after_pauses_by_the_default(
    pool: ClientPool, clock: FakeClock, http_mock: aioresponses
) -> None:
    """A 429 whose Retry-After is `²` waits the configured default, then the request succeeds."""
    client = pool.client(name="s", max_concurrency=2, request_timeout=5, connect_timeout=5,
                         throttles=[CallLimitThrottle(clock)])  # fmt: skip
    http_mock.get(URL, status=429, headers={"Retry-After": "²", "X-AC-Call-Limit": "²/²"})
    http_mock.get(URL, payload={"ok": True})
    start = clock.monotonic()
    response = await client.get_json(URL, stats=RequestStats())
    assert response.data == {"ok": True}
    assert clock.monotonic() - start == pytest.approx(5.0)


# -- body size ---------------------------------------------------------------------------------


@pytest.mark.parametrize("announced", [True, False])
async def test_a_body_over_the_cap_fails_once_naming_url_and_cap(
    pool: ClientPool, http_mock: aioresponses, announced: bool
) -> None:
    """Over max_body_size (whether Content-Length says so or the body only grows past it): a
    clear error naming the URL and the cap, not retried."""
    client = pool.client(name="s", max_concurrency=2, request_timeout=5, connect_timeout=5)
    headers = {"Content-Length": "5000"} if announced else {}
    http_mock.get(URL, body=b" " * 5000, headers=headers, repeat=True)
    stats = RequestStats()
    with pytest.raises(ResponseError) as caught:
        await client.get_json(URL, stats=stats)
    how = "Content-Length 5000" if announced else "streamed past it"
    assert str(caught.value).startswith(
        f"GET {URL} answered a body over max_body_size (4096 bytes; {how}): not read further"
    )
    assert stats.requests == 1 and stats.retries == 0


async def test_a_body_at_the_cap_is_read(pool: ClientPool, http_mock: aioresponses) -> None:
    """The cap is inclusive, and an unreadable Content-Length is treated as absent."""
    client = pool.client(name="s", max_concurrency=2, request_timeout=5, connect_timeout=5)
    body = b'{"a":"' + b"x" * (4096 - 8) + b'"}'
    http_mock.get(URL, body=body, headers={"Content-Length": "²"})
    response = await client.get_json(URL, stats=RequestStats())
    assert len(response.body) == 4096


async def test_a_streamed_runaway_body_fails_the_run_without_reading_it(tmp_path: Path) -> None:
    """The emulator streams 256 MiB without a Content-Length; a source capped at 1 MiB stops
    reading there: the run fails once, naming the cap, and stores nothing."""
    db = tmp_path / "s.db"
    async with Emulator(EmulatorConfig(adobe=AdobeConfig(products=30), seed=3)) as emu:
        emu.adobe.faults.add(Fault("oversized", size=256 * MIB, times=None))
        http = HttpSettings(max_attempts=3, backoff_base=0.001, max_body_size=MIB)
        async with Runtime(settings_for(db, adobe_source(emu), http=http)) as runtime:
            result = await runtime.sync("shop")
        assert result.status == "failed"
        assert (
            result.error is not None
            and "over max_body_size (1048576 bytes; streamed past it)" in result.error
        )
        assert emu.adobe.stats.requests == 1
    assert query(db, "SELECT count(*) FROM products") == [(0,)]


# -- catalog size and page numbers ---------------------------------------------------------------


@pytest.mark.parametrize("platform", ["adobe", "americommerce"])
async def test_a_total_count_above_max_catalog_size_stops_after_page_one(
    tmp_path: Path, platform: str
) -> None:
    """total_count 10^12: one clear error before any page after the first is asked for."""
    db = tmp_path / "s.db"
    config = EmulatorConfig(
        adobe=AdobeConfig(products=30),
        americommerce=AmeriCommerceConfig(products=30, static_tokens=("t",), call_limit=10**5),
        seed=3,
    )
    async with Emulator(config) as emu:
        side = emu.adobe if platform == "adobe" else emu.americommerce
        side.faults.add(Fault("huge_total", times=None))
        source = adobe_source(emu) if platform == "adobe" else ac_source(emu)
        async with Runtime(settings_for(db, source)) as runtime:
            result = await runtime.sync("shop", "full")
        assert result.status == "failed"
        assert result.error is not None and result.error.startswith(
            "source 'shop': total_count 1000000000000 is above max_catalog_size (10000000)"
        )
        assert side.stats.requests == 1
    assert query(db, "SELECT count(*) FROM products") == [(0,)]


async def test_page_numbers_are_drawn_lazily() -> None:
    """A range of 10^12 page numbers is never expanded: the workers draw one number per request."""
    asked: list[int] = []

    async def fetch(number: int) -> Page:
        asked.append(number)
        # Not empty: an empty page would end the fan-out (the catalog ends there).
        return Page(number, [to_record({"sku": f"s{number}", "id": number})])

    async with aclosing(fetch_concurrently(range(2, 10**12), fetch, 4, "t")) as pages:
        first = [page.number async for page in islice_async(pages, 5)]
    assert sorted(first) == first[:1] + sorted(first[1:]) and len(first) == 5
    assert len(asked) < 20 and min(asked) == 2


async def islice_async(pages: AsyncIterator[Page], n: int) -> AsyncIterator[Page]:
    async for page in pages:
        yield page
        n -= 1
        if n == 0:
            return


async def test_a_believed_huge_catalog_is_fetched_page_by_page(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Even with the ceiling raised past it, total_count 10^12 costs no memory up front: the
    adapter yields pages as they come and stops its workers when the consumer leaves."""
    async with (
        Emulator(EmulatorConfig(adobe=AdobeConfig(products=30), seed=3)) as emu,
        SqliteStore(tmp_path / "s.db") as store,
        ClientPool(HttpSettings(), clock) as pool,
    ):
        emu.adobe.faults.add(Fault("huge_total", times=None))
        settings = adobe_source(emu, max_catalog_size=10**13)
        source = build_source(settings, pool, TokenCache(store, clock), clock)
        assert isinstance(source, AdobeCommerceSource)
        # The adapter's full_pages is an async generator: closing it stops its page workers.
        full = cast(AsyncGenerator[Page, None], source.full_pages(RequestStats()))
        async with aclosing(full) as pages:
            got = [page async for page in islice_async(pages, 6)]
        assert got[0].expected_pages == 10**11 and len(got) == 6
        assert emu.adobe.stats.requests < 20


# -- JSON nesting ------------------------------------------------------------------------------


async def serve_once(
    status: int, body: bytes, headers: dict[str, str] | None = None
) -> web.AppRunner:
    """A loopback server answering every GET with `status` and `body` (JSON)."""

    async def answer(request: web.Request) -> web.Response:
        return web.Response(
            status=status, body=body, content_type="application/json", headers=headers
        )

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


@pytest.mark.parametrize(
    ("status", "error", "message"),
    [
        (200, SourceError, "answered HTTP 200 with JSON nested deeper than syncd reads"),
        (403, HttpStatusError, "refused with HTTP 403: a malformed or truncated JSON body"),
    ],
)
async def test_a_json_bomb_is_a_clear_error(
    clock: FakeClock, status: int, error: type[Exception], message: str
) -> None:
    """100,000 levels of nesting, as a page or as an error body: one clear line naming the URL,
    not a RecursionError, and not retried."""
    runner = await serve_once(status, BOMB)
    try:
        host, port = runner.addresses[0][:2]
        url = f"http://{host}:{port}/api/v1/products"
        async with ClientPool(HttpSettings(), clock) as pool:
            client = pool.client(name="s", max_concurrency=1, request_timeout=5, connect_timeout=5)
            stats = RequestStats()
            with pytest.raises(error) as caught:
                await client.get_json(url, stats=stats)
        assert str(caught.value).startswith(f"GET {url} ") and message in str(caught.value)
        assert stats.requests == 1
    finally:
        await runner.cleanup()


async def test_a_compressed_bomb_is_capped_on_its_decompressed_size(clock: FakeClock) -> None:
    """32 MiB of JSON gzipped to about 32 KiB: the cap counts decompressed bytes, and reading
    stops there (a few MiB allocated at the peak, not 32)."""
    bomb = gzip.compress(b'{"items":[],"total_count":0,"x":"' + b" " * (32 * MIB) + b'"}', 1)
    runner = await serve_once(200, bomb, {"Content-Encoding": "gzip"})
    try:
        host, port = runner.addresses[0][:2]
        url = f"http://{host}:{port}/rest/V1/products"
        async with ClientPool(HttpSettings(max_body_size=MIB), clock) as pool:
            client = pool.client(name="s", max_concurrency=1, request_timeout=5, connect_timeout=5)
            tracemalloc.start()
            try:
                with pytest.raises(ResponseError, match=r"over max_body_size \(1048576 bytes; s"):
                    await client.get_json(url, stats=RequestStats())
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        assert len(bomb) < MIB and peak < 16 * MIB
    finally:
        await runner.cleanup()


def test_a_token_answer_nested_too_deeply_has_no_fields() -> None:
    """The token endpoint's answer is read as {} (no access_token), never a RecursionError."""
    assert EndpointResponse(200, "application/json", BOMB).fields() == {}


def test_a_product_nested_too_deeply_to_store_is_a_source_error() -> None:
    """A product orjson reads (up to 1024 levels) but that cannot be re-serialised: named."""
    item = {"sku": "DEEP", "id": 1, "extension_attributes": codec.loads(nested(1000))}
    with pytest.raises(SourceError, match="product 'DEEP': its JSON is nested deeper"):
        to_record(item)


# -- the token is taken when the request leaves --------------------------------------------------


class ShortLived:
    """Issues token-1, token-2, ... valid 5 s each, handed out to the last second."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls = 0

    @property
    def cache_key(self) -> str:
        return "short"

    @property
    def refresh_margin(self) -> float:
        return 0.0

    async def obtain(self, previous: AccessToken | None) -> AccessToken:
        self.calls += 1
        now = self.clock.now()
        return AccessToken(f"token-{self.calls}", now + timedelta(seconds=5), now)

    def auth_headers(self, token: AccessToken) -> dict[str, str]:
        return {"X-AC-Auth-Token": token.value}


async def test_a_token_that_expires_in_the_call_limit_wait_is_not_sent(
    tmp_path: Path, clock: FakeClock, http_mock: aioresponses
) -> None:
    """The store's window is spent (10/10): the next request waits 10 s for the next window.
    The token valid when it started waiting has expired by then: a new one is sent instead."""
    sent: list[tuple[float, str]] = []

    def answer(url: object, **kwargs: dict[str, object]) -> CallbackResult:
        headers = kwargs["headers"]
        sent.append((clock.monotonic(), str(headers["X-AC-Auth-Token"])))
        return CallbackResult(status=200, payload={}, headers={"X-AC-Call-Limit": "10/10"})

    http_mock.get(URL, callback=answer, repeat=True)
    async with (
        SqliteStore(tmp_path / "s.db") as store,
        ClientPool(HttpSettings(adaptive_rate=False), clock) as pool,
    ):
        auth = SourceAuth(ShortLived(clock), TokenCache(store, clock), "s")
        client = pool.client(
            name="s",
            max_concurrency=1,
            request_timeout=5,
            connect_timeout=5,
            auth=auth,
            throttles=[CallLimitThrottle(clock, window=10)],
        )
        await client.get_json(URL, stats=RequestStats())
        await client.get_json(URL, stats=RequestStats())
    assert [token for _, token in sent] == ["token-1", "token-2"]
    assert sent[1][0] - sent[0][0] >= 10
