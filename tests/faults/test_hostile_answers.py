"""A hostile or broken front: redirects to another origin, a runaway body, an absurd total_count,
a JSON nesting bomb, a Retry-After that is no number, a wait that outlives the token.

Each starts from the daemon's good first sync. The faulted run fails at once with one clear line
(nothing retried) or succeeds, no credential reaches the other origin (a loopback server that
records every request it receives, watched by the lab) or any sink, what was stored before is
intact, the run ends in bounded time and memory, and once healed the next run succeeds. Each row
is recorded (`FaultLab.conclude`) before anything is asserted.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import AsyncIterator

import pytest

from syncd.emulator import Fault
from tests.elsewhere import Elsewhere
from tests.faults.lab import LAB_HTTP, FaultLab

MIB = 1024 * 1024
# A faulted run that is refused at once takes well under a second; this bounds a loop.
WALL_LIMIT = 10.0


@pytest.fixture
async def elsewhere() -> AsyncIterator[Elsewhere]:
    """The origin a redirect points at."""
    async with Elsewhere() as server:
        yield server


async def test_a_token_endpoint_redirect_sends_no_secret_elsewhere(
    lab: FaultLab, elsewhere: Elsewhere
) -> None:
    """IMS answers 307 to another origin when a new token is needed: the client secret is not
    replayed there, the run fails naming the status and that origin, and nothing is lost."""
    emu = await lab.start_emulator(products=100)
    await lab.open()
    lab.watch(elsewhere)
    good = lab.stored()
    lab.change_catalog()
    lab.revoke_tokens()
    lab.inject(Fault("redirect", target="token", status=307, location=elsewhere.url, times=None))
    tokens = emu.adobe.stats.token_requests
    wall = time.perf_counter()
    failed = await lab.sync()
    wall = time.perf_counter() - wall
    asked = emu.adobe.stats.token_requests - tokens
    lab.heal()
    check = lab.unharmed(good)
    lab.assert_recorded(await lab.conclude("token-endpoint-redirect"))
    assert wall < WALL_LIMIT and failed.status == "failed"
    assert (failed.error or "").startswith(
        f"POST {emu.ims_token_url} answered HTTP 307, a redirect to {elsewhere.url}: not followed"
    )
    assert asked == 1  # refused, not retried
    assert elsewhere.received == [] and check.exact, check


async def test_an_api_redirect_sends_no_credential_elsewhere(
    lab: FaultLab, elsewhere: Elsewhere
) -> None:
    """The catalog API answers 302 to another origin: no bearer token, x-api-key or org id goes
    there and its answer is never stored as a page; the run fails at once; nothing is lost."""
    emu = await lab.start_emulator(products=200)
    await lab.open()
    lab.watch(elsewhere)
    good = lab.stored()
    lab.change_catalog()
    lab.inject(Fault("redirect", status=302, location=elsewhere.url, times=None))
    requests = emu.adobe.stats.requests
    wall = time.perf_counter()
    failed = await lab.sync(kind="full")
    wall = time.perf_counter() - wall
    asked = emu.adobe.stats.requests - requests
    impostor = "IMPOSTOR" in lab.stored()
    lab.heal()
    check = lab.unharmed(good)
    lab.assert_recorded(await lab.conclude("api-redirect"))
    assert wall < WALL_LIMIT and failed.status == "failed"
    assert (failed.error or "").startswith(
        f"GET {emu.url}/rest/V1/products answered HTTP 302, a redirect to {elsewhere.url}:"
    )
    assert asked == 1 and not impostor
    assert elsewhere.received == [] and check.exact, check


async def test_a_runaway_body_is_not_read_past_the_cap(lab: FaultLab) -> None:
    """A page answered with 256 MiB (streamed, no Content-Length) under max_body_size 1 MiB:
    read no further than the cap (measured: the run allocates a few MiB at most), one clear
    error, not retried; nothing is lost."""
    emu = await lab.start_emulator(products=200)
    await lab.open(http=LAB_HTTP.model_copy(update={"max_body_size": MIB}))
    good = lab.stored()
    lab.change_catalog()
    lab.inject(Fault("oversized", size=256 * MIB, times=None))
    requests = emu.adobe.stats.requests
    wall = time.perf_counter()
    tracemalloc.start()
    try:
        failed = await lab.sync(kind="full")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    wall = time.perf_counter() - wall
    asked = emu.adobe.stats.requests - requests
    lab.heal()
    check = lab.unharmed(good)
    lab.assert_recorded(await lab.conclude("oversized-body"))
    assert wall < WALL_LIMIT
    assert peak < 16 * MIB, f"{peak / MIB:.1f} MiB allocated at the peak"
    assert failed.status == "failed"
    assert (failed.error or "").startswith(
        f"GET {emu.url}/rest/V1/products answered a body over max_body_size (1048576 bytes; streamed past it)"
    )
    assert asked == 1 and check.exact, check


@pytest.mark.parametrize(
    ("scenario", "total"), [("huge-total-count", 10**12), ("huge-total-empty-pages", 10**9)]
)
async def test_an_absurd_total_count_stops_after_page_one(
    lab: FaultLab, scenario: str, total: int
) -> None:
    """Page 1 says total_count 10^12 (or 10^9, every page past the catalog served empty): the
    run fails before any further page is asked for (and no page number is built for it);
    nothing is lost."""
    emu = await lab.start_emulator(products=200)
    await lab.open()
    good = lab.stored()
    lab.change_catalog()
    lab.inject(Fault("huge_total", total=total, times=None))
    requests = emu.adobe.stats.requests
    wall = time.perf_counter()
    failed = await lab.sync(kind="full")
    wall = time.perf_counter() - wall
    asked = emu.adobe.stats.requests - requests
    lab.heal()
    check = lab.unharmed(good)
    lab.assert_recorded(await lab.conclude(scenario))
    assert wall < WALL_LIMIT and failed.status == "failed"
    assert failed.error == (
        f"source 'shop': total_count {total} is above max_catalog_size (10000000), "
        f"answered by {emu.url}/rest/V1/products page 1; no further page is fetched: raise "
        "max_catalog_size if the catalog is really this large"
    )
    assert asked == 1 and check.exact, check


async def test_json_nested_100000_levels_is_a_clear_error(lab: FaultLab) -> None:
    """Every page answered with arrays nested 100,000 levels deep: one request, not retried, and
    an error naming the URL and the nesting (no RecursionError, no `internal error`)."""
    emu = await lab.start_emulator(products=200)
    await lab.open()
    good = lab.stored()
    lab.change_catalog()
    lab.inject(Fault("nested", times=None))
    requests = emu.adobe.stats.requests
    failed = await lab.sync(kind="full")
    asked = emu.adobe.stats.requests - requests
    lab.heal()
    check = lab.unharmed(good)
    lab.assert_recorded(await lab.conclude("nested-json"))
    assert failed.status == "failed"
    assert (failed.error or "").startswith(f"GET {emu.url}/rest/V1/products"), failed.error
    assert "nested deeper than syncd reads" in (failed.error or ""), failed.error
    assert "Recursion" not in (failed.error or "") and "internal error" not in (failed.error or "")
    assert asked == 1 and check.exact, check


async def test_a_retry_after_that_is_no_number_pauses_by_the_default(lab: FaultLab) -> None:
    """A 429 with `Retry-After: ²` (a digit to `str.isdigit`, not to `int`): retried after the
    default pause, no internal error, the run succeeds."""
    emu = await lab.start_emulator(products=200)
    await lab.open()
    lab.change_catalog()
    lab.inject(Fault("status", status=429, retry_after="²", after=2))
    seen = len(lab.logs)
    result = await lab.sync(kind="full")
    lab.verify()
    lab.assert_recorded(await lab.conclude("retry-after-superscript"))
    assert result.ok, result.error
    assert result.totals.rate_limited == 1 and result.totals.retries == 1
    assert emu.adobe.stats.faults_injected >= 1
    assert not lab.events("sync.crashed", seen)


async def test_a_token_that_expires_while_its_request_waits_is_not_sent(lab: FaultLab) -> None:
    """Tokens live 120 s; a 429 asks every worker to wait 300 s. The requests that waited take
    a token when they leave, so none carries the one that expired meanwhile: no 401 at all,
    exactly one new token for the wait."""
    emu = await lab.start_emulator(products=200, token_lifetime=120)
    await lab.open()
    lab.change_catalog()  # 600 s: the first sync's token has expired too
    lab.inject(Fault("status", status=429, retry_after="300", after=4))
    lab.note("tokens live 120 s")
    stats = emu.adobe.stats
    tokens, refused, expired = (
        stats.token_requests,
        stats.unauthorized,
        stats.expired_token_requests,
    )
    result = await lab.sync(kind="full")
    lab.verify()
    minted = stats.token_requests - tokens
    unauthorized = stats.unauthorized - refused + stats.expired_token_requests - expired
    lab.assert_recorded(await lab.conclude("token-expired-while-queued"))
    assert result.ok, result.error
    assert result.duration >= 300  # the wait happened (on the lab's clock)
    assert unauthorized == 0
    assert minted == 2  # one for the expired first token, one after the wait
