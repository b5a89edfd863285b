"""Full syncs in one long-lived process on PostgreSQL, as a daemon runs them: do its plans keep up
with tables that empty and fill between runs?

    python -m benchmarks.pgplans [--products 20000] [--postgres postgresql://postgres@127.0.0.1/postgres]

One runtime (the daemon's store and connection pool) and an in-process emulator; a fresh
database. Two scenes, each sync's wall time printed:

- `marks`: four full syncs of one source, `VACUUM ANALYZE` after each, as autovacuum does between
  scheduled runs (it empties the scan marks table; the next scan fills it again);
- `new-source`: a 20-product source synced a dozen times with changes, `VACUUM ANALYZE`, then a
  big source's first full sync, every product of it changed, and two more full syncs right after
  (before autovacuum has seen the big source).

Writes `results/pgplans-<size>.json`; docs/SCALING.md quotes it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.environment import load, machine
from benchmarks.plan import size_label
from benchmarks.processes import ROOT
from benchmarks.stores import DEFAULT_SERVER, scratch_database
from syncd.commands.demo import emulator_source
from syncd.config import HttpSettings, Settings, StoreSettings
from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig
from syncd.logging import configure_logging
from syncd.runtime import Runtime
from syncd.sync import SyncEngine

RESULTS = ROOT / "benchmarks" / "results"


def _vacuum(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


async def _scenes(url: str, products: int, say: Callable[[str], None]) -> dict[str, list[float]]:
    """Run both scenes on database `url`; each scene's sync wall times, in order."""
    times: dict[str, list[float]] = {"marks": [], "new-source": []}
    small_config = EmulatorConfig(adobe=AdobeConfig(products=20), seed=7)
    big_config = EmulatorConfig(adobe=AdobeConfig(products=products), seed=8)
    async with Emulator(small_config) as small, Emulator(big_config) as big:
        settings = Settings(
            store=StoreSettings(url=url),
            sources=(
                emulator_source(small, "small"),
                emulator_source(big, "big"),
                emulator_source(big, "again"),
            ),
            http=HttpSettings(max_attempts=3),
        )
        async with Runtime(settings) as runtime:
            engine = SyncEngine(runtime.store, runtime.clock)

            async def sync(scene: str, name: str) -> None:
                started = time.perf_counter()
                result = await engine.run(runtime.sources[name], "full")
                took = time.perf_counter() - started
                times[scene].append(round(took, 3))
                say(f"  {scene:10s} {name:6s} {result.status:9s} {took:7.2f} s")

            for _ in range(4):
                await sync("marks", "again")
                _vacuum(url)
            for round_ in range(12):
                for sku in list(small.adobe.catalog.skus()):
                    small.adobe.catalog.update(sku, price=float(round_ + 1))
                await sync("new-source", "small")
            _vacuum(url)
            await sync("new-source", "big")
            for sku in list(big.adobe.catalog.skus()):
                big.adobe.catalog.update(sku, price=1.0)
            await sync("new-source", "big")
            await sync("new-source", "big")
    return times


def main(argv: list[str] | None = None) -> int:
    """Run the scenes, print each sync, write the JSON record."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pgplans")
    parser.add_argument("--products", type=int, default=20_000)
    parser.add_argument("--postgres", default=DEFAULT_SERVER)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    configure_logging("warning")  # the syncs' own lines, not every page's
    record: dict[str, Any] = {
        "case": f"pgplans-{size_label(args.products)}",
        "products": args.products,
        "command": "python -m benchmarks.pgplans " + " ".join(argv or sys.argv[1:]),
        "machine": machine(ROOT),
        "load_before": load(),
    }
    with scratch_database(args.postgres) as url:
        record["syncs_s"] = asyncio.run(_scenes(url, args.products, print))
    record["load_after"] = load()
    path = args.results / f"{record['case']}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
