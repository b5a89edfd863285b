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


async def test_a_token_revoked_mid_run_is_refreshed_once(lab: FaultLab) -> None:
    """Revoked after the 3rd page: the 401s cause exactly one new token, and the run completes."""
    emu = await lab.start_emulator(products=300)
    await lab.open(lab.source(max_concurrency=8))

    def revoke_after_third_page(pages: int, expected: int | None, items: int) -> None:
        if pages == 3:
            emu.adobe.revoke_tokens()

    result = await lab.sync(progress=revoke_after_third_page)
    assert result.ok, result.error
    assert emu.adobe.stats.unauthorized >= 1
    assert emu.adobe.stats.token_requests == 2
    assert token_events(lab) == ["issued", "invalidated", "refreshed"]
    check = lab.check()
    assert check.exact, check
    lab.record("token-revoked-mid-run", "succeeded, one refresh", check)


async def burst(lab: FaultLab) -> list[dict[str, Any]]:
    """200 requests at once, pages 1..200, each on its own worker, sharing the source's token."""
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
    return [item for answer in answers for item in answer.data["items"]]


def check_burst(lab: FaultLab, items: list[dict[str, Any]]) -> DataCheck:
    """The answers against the catalog: every product exactly once, as the catalog renders it."""
    catalog = lab.emu.adobe.catalog.snapshot()
    answered = {item["sku"]: item for item in items}
    return DataCheck(
        lost=sum(1 for sku, item in catalog.items() if answered.get(sku) != item),
        duplicated=len(items) - len(answered),
        unexpected=len(answered.keys() - catalog.keys()),
        tombstoned=0,
    )


async def test_a_burst_on_an_expired_token_refreshes_it_once(lab: FaultLab) -> None:
    """200 concurrent requests find the shared token expired: one token request serves them all."""
    emu = await lab.start_emulator(products=10 * BURST, token_lifetime=600)
    runtime = await lab.open(lab.source(), http=BURST_HTTP)
    provider = ImsTokenProvider(runtime.settings.source("shop").auth, runtime.pool, lab.clock)  # type: ignore[arg-type]
    await runtime.cache.get(provider, "shop")
    lab.clock.advance(601)  # type: ignore[attr-defined]
    check = check_burst(lab, await burst(lab))
    assert check.exact, check
    assert emu.adobe.stats.token_requests == 2
    assert emu.adobe.stats.expired_token_requests == 0 and emu.adobe.stats.unauthorized == 0
    assert token_events(lab) == ["issued", "refreshed"]
    stats = lab.direct[0]
    assert (stats.requests, stats.retries) == (BURST, 0)
    lab.record("token-burst-expired", "200/200 answered, one refresh", check)


async def test_a_burst_on_a_rejected_token_invalidates_and_refreshes_once(lab: FaultLab) -> None:
    """200 concurrent requests carry a token the API has revoked: all their 401s cause one
    invalidation and one new token, and every request is answered."""
    emu = await lab.start_emulator(products=10 * BURST)
    runtime = await lab.open(lab.source(), http=BURST_HTTP)
    provider = ImsTokenProvider(runtime.settings.source("shop").auth, runtime.pool, lab.clock)  # type: ignore[arg-type]
    await runtime.cache.get(provider, "shop")
    emu.adobe.revoke_tokens()
    check = check_burst(lab, await burst(lab))
    assert check.exact, check
    assert emu.adobe.stats.token_requests == 2
    assert emu.adobe.stats.unauthorized >= 1
    assert token_events(lab) == ["issued", "invalidated", "refreshed"]
    stats = lab.direct[0]
    assert stats.requests == BURST + emu.adobe.stats.unauthorized and stats.retries == 0
    lab.record("token-burst-rejected", "200/200 answered, one invalidation, one refresh", check)
