"""Tokens that stop working: revoked in the middle of a run, expired or rejected under a burst."""

from __future__ import annotations

import asyncio
from typing import Any

from syncd.auth.ims import ImsTokenProvider
from syncd.http import RequestStats, SourceAuth
from syncd.sources.adobe_commerce import full_params
from tests.faults.lab import LAB_HTTP, DataCheck, FaultLab
from tests.support import query

BURST = 200
BURST_HTTP = LAB_HTTP.model_copy(update={"pool_limit": BURST})


def token_events(lab: FaultLab) -> list[str]:
    return [row[0] for row in query(lab.db, "SELECT event FROM token_events ORDER BY id")]


async def revoke_after(lab: FaultLab, requests: int) -> int:
    """Revoke every token once the API has answered `requests` more requests; how many it had."""
    stats = lab.emu.adobe.stats
    target = stats.requests + requests
    while stats.requests < target:  # noqa: ASYNC110 - a counter the emulator bumps on this loop
        await asyncio.sleep(0)
    lab.revoke_tokens(f" once {requests} API requests of the run were answered")
    return stats.requests


async def test_a_token_revoked_mid_run_is_refreshed_once(lab: FaultLab) -> None:
    """Revoked after 3 requests: the 401s cause exactly one new token, the run completes."""
    emu = await lab.start_emulator(products=300)
    await lab.open(lab.source(max_concurrency=8))
    before = lab.stored()
    changed = lab.change_catalog()
    tokens, sent = emu.adobe.stats.token_requests, emu.adobe.stats.requests
    revoker = asyncio.create_task(revoke_after(lab, 3))
    result = await lab.sync(kind="full")
    revoked_at = await revoker
    lab.expect(result.ok, result.error)
    lab.expect(
        revoked_at - sent < result.totals.requests, "revoked_at - sent < result.totals.requests"
    )
    lab.expect(emu.adobe.stats.unauthorized >= 1, "emu.adobe.stats.unauthorized >= 1")
    lab.expect(
        emu.adobe.stats.token_requests - tokens == 1, "emu.adobe.stats.token_requests - tokens == 1"
    )
    lab.expect(
        token_events(lab) == ["issued", "invalidated", "refreshed"],
        'token_events(lab) == ["issued", "invalidated", "refreshed"]',
    )
    stored = lab.stored()
    lab.expect(
        all(stored[sku] == item for sku, item in before.items() if sku not in changed),
        "all(stored[sku] == item for sku, item in before.items() if sku not in changed)",
    )
    check = lab.verify()
    lab.expect(check.exact, check)
    await lab.finish("token-revoked-mid-run")


async def burst(lab: FaultLab) -> DataCheck:
    """200 requests at once, pages 1..200, each on its own worker, sharing the source's token;
    the answers against the catalog: every product exactly once, as the catalog renders it."""
    runtime = lab.runtime
    assert runtime is not None
    settings = runtime.settings.source("shop")
    provider = ImsTokenProvider(settings.auth, runtime.pool, lab.clock)  # type: ignore[arg-type]
    client = runtime.pool.client(
        name="shop",
        max_concurrency=BURST,
        request_timeout=30,
        connect_timeout=10,
        auth=SourceAuth(provider, runtime.cache, "shop"),
    )
    stats = RequestStats()
    lab.direct.append(stats)
    url = f"{lab.emu.url}/rest/V1/products"
    answers = await asyncio.gather(
        *(client.get_json(url, full_params(page, 10), stats=stats) for page in range(1, BURST + 1))
    )
    items: list[dict[str, Any]] = [item for a in answers for item in a.data["items"]]
    catalog = lab.emu.adobe.catalog.snapshot()
    answered = {item["sku"]: item for item in items}
    check = DataCheck(
        lost=sum(1 for sku, item in catalog.items() if answered.get(sku) != item),
        duplicated=len(items) - len(answered),
        unexpected=len(answered.keys() - catalog.keys()),
        tombstoned=0,
    )
    lab.checks.append(check)
    complete = sum(len(a.data["items"]) == 10 for a in answers)
    lab.bursts.append(f"burst: {complete}/{BURST} requests answered in full")
    return check


async def test_a_burst_on_an_expired_token_refreshes_it_once(lab: FaultLab) -> None:
    """200 concurrent requests find the shared token expired: one token request serves them all;
    the stored products are untouched, and the daemon's next run uses the new token."""
    emu = await lab.start_emulator(products=10 * BURST, token_lifetime=600)
    await lab.open(lab.source(page_size=100), http=BURST_HTTP)  # a quick first sync
    before = lab.stored()
    lab.clock.advance(601)
    lab.note("the shared token expired (the clock moved 601 s past a 600 s token)")
    check = await burst(lab)
    lab.expect(check.exact, check)
    lab.expect(emu.adobe.stats.token_requests == 2, "emu.adobe.stats.token_requests == 2")
    lab.expect(
        emu.adobe.stats.expired_token_requests == 0 and emu.adobe.stats.unauthorized == 0,
        "emu.adobe.stats.expired_token_requests == 0 and emu.adobe.stats.unauthorized == 0",
    )
    lab.expect(
        token_events(lab) == ["issued", "refreshed"], 'token_events(lab) == ["issued", "refreshed"]'
    )
    stats = lab.direct[0]
    lab.expect(
        (stats.requests, stats.retries) == (BURST, 0),
        "(stats.requests, stats.retries) == (BURST, 0)",
    )
    check = lab.unharmed(before)
    lab.expect(check.exact, check)
    await lab.finish("token-burst-expired")
    assert emu.adobe.stats.token_requests == 2


async def test_a_burst_on_a_rejected_token_invalidates_and_refreshes_once(lab: FaultLab) -> None:
    """200 concurrent requests carry a token the API has revoked: all their 401s cause one
    invalidation and one new token, every request is answered, the stored products untouched."""
    emu = await lab.start_emulator(products=10 * BURST)
    await lab.open(lab.source(page_size=100), http=BURST_HTTP)  # a quick first sync
    before = lab.stored()
    unauthorized = emu.adobe.stats.unauthorized
    lab.revoke_tokens()
    check = await burst(lab)
    lab.expect(check.exact, check)
    lab.expect(emu.adobe.stats.token_requests == 2, "emu.adobe.stats.token_requests == 2")
    rejected = emu.adobe.stats.unauthorized - unauthorized
    lab.expect(rejected >= 1, "rejected >= 1")
    lab.expect(
        token_events(lab) == ["issued", "invalidated", "refreshed"],
        'token_events(lab) == ["issued", "invalidated", "refreshed"]',
    )
    stats = lab.direct[0]
    lab.expect(
        stats.requests == BURST + rejected and stats.retries == 0,
        "stats.requests == BURST + rejected and stats.retries == 0",
    )
    check = lab.unharmed(before)
    lab.expect(check.exact, check)
    await lab.finish("token-burst-rejected")
