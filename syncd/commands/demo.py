"""`syncd demo`: the bundled emulator, synced into a local SQLite file."""

from __future__ import annotations

import random
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from syncd.commands.output import ProgressBar, print_result
from syncd.config import (
    AdobeCommerceSourceSettings,
    ExactSettings,
    ImsAuthSettings,
    StoreSettings,
)
from syncd.runtime import Runtime

if TYPE_CHECKING:
    from syncd.emulator import Emulator
    from syncd.emulator.catalog import Catalog


DEMO_CATALOG_UNTIL = datetime(2026, 1, 1, tzinfo=UTC)
"""The demo catalog's history ends here in every process, so a second demo run sees the same
catalog plus the products it changes itself, and shows what an incremental run costs."""


def emulator_source(emu: Emulator, name: str) -> AdobeCommerceSourceSettings:
    """An Adobe Commerce source `name` aimed at `emu`'s catalog, with its credentials (pages of
    100, 8 requests in flight)."""
    adobe = emu.adobe.config
    return AdobeCommerceSourceSettings(
        name=name,
        kind="adobe_commerce",
        base_url=emu.url,  # type: ignore[arg-type]
        page_size=100,
        max_concurrency=8,
        auth=ImsAuthSettings(
            token_url=emu.ims_token_url,  # type: ignore[arg-type]
            client_id=adobe.client_id,
            client_secret=adobe.client_secret,  # type: ignore[arg-type]
            org_id=adobe.org_id,
        ),
    )


def change_products(catalog: Catalog, count: int, rng: random.Random) -> int:
    """Reprice `count` random products of `catalog` now, as a merchant would between two runs."""
    skus = rng.sample(sorted(catalog.skus()), min(count, len(catalog)))
    for sku in skus:
        price = float(catalog.get(sku).get("price") or 0)
        catalog.update(sku, price=round(price * 1.1 + 1, 2))
    return len(skus)


async def demo(products: int, db: Path) -> int:
    """`syncd demo`: start the emulator on a free loopback port and sync it into `db`.

    The first run is a full sync; each later one first changes 1% of the catalog in the
    emulator, then runs incrementally and reads only those products.
    """
    from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig

    config = EmulatorConfig(adobe=AdobeConfig(products=products), catalog_until=DEMO_CATALOG_UNTIL)
    async with Emulator(config) as emu:
        settings = ExactSettings(
            store=StoreSettings(path=db),
            sources=(emulator_source(emu, "demo"),),
        )
        print(f"emulator: {products} products at {emu.url} (loopback only)", file=sys.stderr)
        async with Runtime(settings) as runtime:
            started = runtime.clock.now()
            if (await runtime.store.source_state("demo")).watermark is not None:
                previous = len(await runtime.store.runs("demo", limit=1000))
                changed = change_products(
                    emu.adobe.catalog, max(1, products // 100), random.Random(previous)
                )
                print(
                    f"emulator: changed {changed} products since the last demo run", file=sys.stderr
                )
            bar = ProgressBar(sys.stderr, "demo")
            try:
                result = await runtime.sync("demo", progress=bar)
            finally:
                bar.close()
            events = await runtime.store.token_events("demo", since=started, limit=1000)
            stored = await runtime.store.count_products("demo")
        token_summary = ", ".join(
            f"{sum(e.event == kind for e in events)} {kind}"
            for kind in sorted({e.event for e in events})
        )
        print_result(
            result,
            sys.stdout,
            {
                "stored": f"{stored} products in {db}",
                "tokens": f"{token_summary or 'none'} "
                f"({emu.adobe.stats.token_requests} token request(s) served)",
            },
        )
    return 0 if result.ok else 1
