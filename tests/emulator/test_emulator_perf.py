"""A large catalog pages correctly deep into its order (its cost is measured by `benchmarks/`)."""

from __future__ import annotations

import aiohttp

from syncd.emulator import AdobeConfig
from tests.emulator.emulator_helpers import AdobeCaller, StartEmulator, criteria


async def test_a_100k_catalog_serves_a_deep_sorted_page(
    start: StartEmulator, session: aiohttp.ClientSession
) -> None:
    """Page 500 of 100k products sorted by (updated_at, entity_id) holds 100 ordered items."""
    emu = await start(adobe=AdobeConfig(products=100_000))
    caller = AdobeCaller(emu, session)
    body = (
        await caller.get(
            criteria(page_size=100, page=500, sort=[("updated_at", "ASC"), ("entity_id", "ASC")])
        )
    ).json()
    assert body["total_count"] == 100_000
    keys = [(item["updated_at"], item["id"]) for item in body["items"]]
    assert len(keys) == 100
    assert keys == sorted(keys)
