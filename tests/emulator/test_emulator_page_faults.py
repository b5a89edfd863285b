"""Page faults on both platforms: only a full scan's offset pages are hit, each the way it says."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from syncd.emulator import AmeriCommerceConfig, Emulator, Fault
from syncd.emulator.platform import PlatformEmulator
from tests.emulator.emulator_helpers import AdobeCaller, Answer, StartEmulator, criteria

TOKEN = "console-token"
Page = Callable[..., Awaitable[list[dict[str, Any]]]]


@pytest.fixture(params=["adobe", "americommerce"])
async def paged(
    request: pytest.FixtureRequest, start: StartEmulator, session: aiohttp.ClientSession
) -> tuple[PlatformEmulator, Page, str]:
    """A platform, a function fetching one offset page's products (`trimmed`: a listing trimmed
    to id and sku instead, which no page fault may touch), and its sku field."""
    emu: Emulator = await start(
        americommerce=AmeriCommerceConfig(products=50, static_tokens=(TOKEN,), call_limit=10_000)
    )
    if request.param == "adobe":
        caller = AdobeCaller(emu, session)
        headers = await caller.headers()

        async def adobe_page(number: int, trimmed: bool = False) -> list[dict[str, Any]]:
            extra = {"fields": "items[id,sku],total_count"} if trimmed else {}
            query = criteria(page_size=10, page=number, sort=[("entity_id", "ASC")]) | extra
            answer: Answer = await caller.get(query, headers)
            # Same total_count whatever a page fault did to the items.
            assert answer.json()["total_count"] == len(emu.adobe.catalog)
            return list(answer.json()["items"])

        return emu.adobe, adobe_page, "sku"

    async def ac_page(number: int, trimmed: bool = False) -> list[dict[str, Any]]:
        fields = "&fields=id,item_number" if trimmed else ""
        url = f"{emu.url}/api/v1/products?page={number}&count=10&sort=id{fields}"
        headers = {"X-AC-Auth-Token": TOKEN, "Cache-Control": "no-cache"}
        async with session.get(url, headers=headers) as response:
            data = await response.json()
        assert data["total_count"] == len(emu.americommerce.catalog)
        return list(data["products"])

    return emu.americommerce, ac_page, "item_number"


async def test_empty_and_short_pages_keep_the_total(
    paged: tuple[PlatformEmulator, Page, str],
) -> None:
    """Page 1 and trimmed listings are never hit; page 3 comes back empty, then short."""
    platform, page, _ = paged
    platform.faults.add(Fault("empty_page", page=3))
    platform.faults.add(Fault("short_page"))
    assert len(await page(1)) == 10
    assert len(await page(3, trimmed=True)) == 10
    assert await page(3) == []
    assert len(await page(2)) == 3
    assert len(await page(2)) == 10
    assert platform.stats.faults_injected == 2


async def test_duplicate_sku_hands_the_first_products_sku_to_another(
    paged: tuple[PlatformEmulator, Page, str],
) -> None:
    """The page's first product keeps its own id and takes the catalog's first sku."""
    platform, page, sku = paged
    first = (await page(1))[0]
    platform.faults.add(Fault("duplicate_sku", page=4))
    faulted = await page(4)
    assert faulted[0][sku] == first[sku] and faulted[0]["id"] != first["id"]


async def test_stale_page_serves_the_first_answer_again(
    paged: tuple[PlatformEmulator, Page, str],
) -> None:
    """The first hit is remembered as it was; the second gets that copy, whatever changed since."""
    platform, page, sku = paged
    platform.faults.add(Fault("stale_page", page=2, times=2))
    before = await page(2)
    platform.faults.add(Fault("stale_page", page=3, times=2))
    kept = await page(3)
    platform.catalog.update(kept[0][sku], name="Renamed")  # type: ignore[attr-defined]
    platform.catalog.update(before[0][sku], name="Renamed too")  # type: ignore[attr-defined]
    assert await page(2) == before and await page(3) == kept
    assert (await page(2))[0] != before[0]
