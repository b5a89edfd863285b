"""A hostile or broken front: redirects to another origin, a runaway body, an absurd total_count.

Each starts from the daemon's good first sync. The faulted run fails at once with one clear line
(nothing retried), no credential reaches the other origin (a loopback server that records every
request it receives), what was stored before is intact, the run ends in bounded time and memory,
and once healed the next run succeeds.
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


def arm(lab: FaultLab, fault: Fault, words: str) -> None:
    """Arm `fault` on the lab's emulator and note it in the report's words."""
    lab.emu.adobe.faults.add(fault)
    lab.note(words)


def no_leak(lab: FaultLab, elsewhere: Elsewhere) -> None:
    """Nothing reached the other origin, and no log line carries the client secret."""
    assert elsewhere.received == []
    secret = lab.emu.adobe.config.client_secret
    assert all(secret not in repr(event) for event in lab.logs)


async def test_a_token_endpoint_redirect_sends_no_secret_elsewhere(
    lab: FaultLab, elsewhere: Elsewhere
) -> None:
    """IMS answers 307 to another origin when a new token is needed: the client secret is not
    replayed there, the run fails naming the status and that origin, and nothing is lost."""
    emu = await lab.start_emulator(products=100)
    await lab.open()
    good = lab.stored()
    lab.change_catalog()
    lab.revoke_tokens()
    fault = Fault("redirect", target="token", status=307, location=elsewhere.url, times=None)
    arm(lab, fault, "every token endpoint answer: HTTP 307 to another origin")
    tokens = emu.adobe.stats.token_requests
    wall = time.perf_counter()
    failed = await lab.sync()
    assert time.perf_counter() - wall < WALL_LIMIT
    assert failed.status == "failed"
    assert (failed.error or "").startswith(
        f"POST {emu.ims_token_url} answered HTTP 307, a redirect to {elsewhere.url}: not followed"
    )
    assert emu.adobe.stats.token_requests - tokens == 1  # refused, not retried
    no_leak(lab, elsewhere)
    check = lab.unharmed(good)
    assert check.exact, check
    lab.assert_alive()

    lab.heal()
    await lab.finish("token-endpoint-redirect")
    no_leak(lab, elsewhere)


async def test_an_api_redirect_sends_no_credential_elsewhere(
    lab: FaultLab, elsewhere: Elsewhere
) -> None:
    """The catalog API answers 302 to another origin: no bearer token, x-api-key or org id goes
    there and its answer is never stored as a page; the run fails at once; nothing is lost."""
    emu = await lab.start_emulator(products=200)
    await lab.open()
    good = lab.stored()
    lab.change_catalog()
    fault = Fault("redirect", status=302, location=elsewhere.url, times=None)
    arm(lab, fault, "every API answer: HTTP 302 to another origin")
    requests = emu.adobe.stats.requests
    wall = time.perf_counter()
    failed = await lab.sync(kind="full")
    assert time.perf_counter() - wall < WALL_LIMIT
    assert failed.status == "failed"
    assert (failed.error or "").startswith(
        f"GET {emu.url}/rest/V1/products answered HTTP 302, a redirect to {elsewhere.url}:"
    )
    assert emu.adobe.stats.requests - requests == 1
    no_leak(lab, elsewhere)
    assert "IMPOSTOR" not in lab.stored()
    check = lab.unharmed(good)
    assert check.exact, check
    lab.assert_alive()

    lab.heal()
    await lab.finish("api-redirect")
    no_leak(lab, elsewhere)


async def test_a_runaway_body_is_not_read_past_the_cap(lab: FaultLab) -> None:
    """A page answered with 256 MiB (streamed, no Content-Length) under max_body_size 1 MiB:
    read no further than the cap (measured: the run allocates a few MiB at most), one clear
    error, not retried; nothing is lost."""
    emu = await lab.start_emulator(products=200)
    await lab.open(http=LAB_HTTP.model_copy(update={"max_body_size": MIB}))
    good = lab.stored()
    lab.change_catalog()
    arm(lab, Fault("oversized", size=256 * MIB, times=None), "every API answer: a 256 MiB body")
    requests = emu.adobe.stats.requests
    wall = time.perf_counter()
    tracemalloc.start()
    try:
        failed = await lab.sync(kind="full")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - wall < WALL_LIMIT
    assert peak < 16 * MIB, f"{peak / MIB:.1f} MiB allocated at the peak"
    assert failed.status == "failed"
    assert (failed.error or "").startswith(
        f"GET {emu.url}/rest/V1/products answered a body over max_body_size (1048576 bytes; streamed past it)"
    )
    assert emu.adobe.stats.requests - requests == 1
    check = lab.unharmed(good)
    assert check.exact, check
    lab.assert_alive()

    lab.heal()
    await lab.finish("oversized-body")


async def test_an_absurd_total_count_stops_after_page_one(lab: FaultLab) -> None:
    """Page 1 says total_count 10^12: the run fails before any further page is asked for (and
    no page number is built for it); nothing is lost."""
    emu = await lab.start_emulator(products=200)
    await lab.open()
    good = lab.stored()
    lab.change_catalog()
    arm(lab, Fault("huge_total", times=None), "every API answer: total_count 10^12")
    requests = emu.adobe.stats.requests
    wall = time.perf_counter()
    failed = await lab.sync(kind="full")
    assert time.perf_counter() - wall < WALL_LIMIT
    assert failed.status == "failed"
    assert failed.error == (
        "source 'shop': total_count 1000000000000 is above max_catalog_size (10000000), "
        f"answered by {emu.url}/rest/V1/products page 1; no further page is fetched: raise "
        "max_catalog_size if the catalog is really this large"
    )
    assert emu.adobe.stats.requests - requests == 1
    check = lab.unharmed(good)
    assert check.exact, check
    lab.assert_alive()

    lab.heal()
    await lab.finish("huge-total-count")
