"""Budgets the benchmarks rely on: fast generation and sub-millisecond pages of 100 products."""

from __future__ import annotations

import time

import aiohttp
from emulator_helpers import AdobeCaller, StartEmulator, criteria

from syncd.emulator import AdobeConfig
from syncd.emulator.adobe_products import FIELD_KINDS
from syncd.emulator.predicates import Getter, getter
from syncd.emulator.selection import SortKey, select


async def test_generating_and_paging_100k(
    start: StartEmulator, session: aiohttp.ClientSession
) -> None:
    """100k products generate well under a second; a page of 100 costs well under 1 ms of CPU."""
    began = time.process_time()
    emu = await start(adobe=AdobeConfig(products=100_000))
    assert time.process_time() - began < 1.5
    adobe = emu.adobe
    catalog = adobe.catalog

    def gets(field: str) -> Getter:
        return getter(catalog, field, FIELD_KINDS[field])

    sort = [SortKey("updated_at"), SortKey("entity_id")]
    pages = 100
    began = time.process_time()
    for page in range(pages):
        slots = select(catalog, [], sort, gets, adobe._order_rng).window(
            page * 100, page * 100 + 100, None
        )
        adobe._assemble(slots, {}, catalog.__len__(), None)
    cold = (time.process_time() - began) / pages
    began = time.process_time()
    for page in range(pages):
        slots = select(catalog, [], sort, gets, adobe._order_rng).window(
            page * 100, page * 100 + 100, None
        )
        adobe._assemble(slots, {}, catalog.__len__(), None)
    warm = (time.process_time() - began) / pages
    assert cold < 0.002, f"cold page {cold * 1000:.3f} ms"
    assert warm < 0.0005, f"warm page {warm * 1000:.3f} ms"
    caller = AdobeCaller(emu, session)
    body = (
        await caller.get(
            criteria(page_size=100, page=500, sort=[("updated_at", "ASC"), ("entity_id", "ASC")])
        )
    ).json()
    assert len(body["items"]) == 100 and body["total_count"] == 100_000
