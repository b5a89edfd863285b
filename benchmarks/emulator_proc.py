"""The emulator in a process of its own, driven by one-line commands on stdin.

    python -m benchmarks.emulator_proc --products 100000 [--rate 20 --burst 20] [--latency 0.05]

It prints one JSON line once it listens (`url`, `ims_token_url`), then answers each command with
one JSON line: `stats` (counters and the emulator's own CPU seconds), `mutate K` (change K products
spread over the catalog, bumping their `updated_at`), `quit`. The catalog is generated as of an
hour ago, so the products an incremental run must read are exactly the ones `mutate` changed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime, timedelta
from typing import Any

from benchmarks.measure import Meter, pin_to_cpu
from syncd.clock import SystemClock
from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig, RateLimitConfig

_BACKDATE = timedelta(hours=1)


class _BackdatedClock(SystemClock):
    """The system clock, shifted by `offset` (used only while the catalog is generated)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return super().now() + self.offset


def build(products: int, rate: float | None, burst: int | None, latency: float) -> Emulator:
    """An emulator whose Adobe catalog was last edited an hour ago, every product pre-rendered."""
    limit = RateLimitConfig(rate, burst or max(1, round(rate))) if rate else None
    config = EmulatorConfig(
        adobe=AdobeConfig(products=products, rate_limit=limit, latency=latency), seed=6
    )
    clock = _BackdatedClock()
    clock.offset = -_BACKDATE
    emulator = Emulator(config, clock)
    clock.offset = timedelta(0)
    catalog = emulator.adobe.catalog
    # Render every product once now, so no client pays the emulator's cold-cache cost.
    for slot in catalog.alive:
        catalog.render_bytes(slot)
    return emulator


def mutate(emulator: Emulator, count: int) -> int:
    """Change the price of `count` products spread evenly over the catalog (bumps updated_at)."""
    catalog = emulator.adobe.catalog
    skus = list(catalog.skus())
    if count <= 0 or not skus:
        return 0
    step = max(1, len(skus) // count)
    chosen = skus[::step][:count]
    for n, sku in enumerate(chosen):
        catalog.update(sku, price=round(1.0 + n % 97 + 0.5, 2))
    return len(chosen)


def stats(emulator: Emulator, meter: Meter) -> dict[str, Any]:
    """The Adobe side's counters and the CPU this process has used so far."""
    s = emulator.adobe.stats
    return {
        "requests": s.requests,
        "token_requests": s.token_requests,
        "rate_limited": s.rate_limited,
        "unauthorized": s.unauthorized,
        "cpu_s": round(meter.stop().cpu_s, 3),
    }


async def serve(args: argparse.Namespace) -> None:
    """Serve until `quit` or end of input."""
    meter = Meter()
    emulator = build(args.products, args.rate, args.burst, args.latency)
    async with emulator:
        _say({"url": emulator.url, "ims_token_url": emulator.ims_token_url})
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := (await reader.readline()).decode().split():
            command, rest = line[0], line[1:]
            if command == "stats":
                _say(stats(emulator, meter))
            elif command == "mutate":
                _say({"mutated": mutate(emulator, int(rest[0]))})
            elif command == "quit":
                _say({"bye": True})
                return
            else:
                _say({"error": f"unknown command {command!r}"})


def _say(payload: dict[str, Any]) -> None:
    print(json.dumps(payload), flush=True)


def main(argv: list[str] | None = None) -> None:
    """Parse the emulator's settings, pin it to its CPU and serve."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.emulator_proc")
    parser.add_argument("--products", type=int, required=True)
    parser.add_argument("--rate", type=float, default=None)
    parser.add_argument("--burst", type=int, default=None)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--cpu", type=int, default=None)
    args = parser.parse_args(argv)
    pin_to_cpu(args.cpu)
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
