"""The emulator in a process of its own, driven by one-line commands on stdin.

    python -m benchmarks.emulator_proc --products 100000 [--rate 20 --burst 20] [--latency 0.05]
        [--platform americommerce --call-limit 10 --other-calls 3 --window 10]
        [--cost BASE,PER_ITEM,PER_LOG10,WORKERS]

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
from benchmarks.plan import AC_TOKEN
from syncd.clock import SystemClock
from syncd.emulator import (
    AdobeConfig,
    AmeriCommerceConfig,
    Emulator,
    EmulatorConfig,
    RateLimitConfig,
    ServerCost,
)
from syncd.emulator.platform import PlatformEmulator

# "No limit" on AmeriCommerce: a window no benchmark fills.
AC_UNLIMITED = 1_000_000

_BACKDATE = timedelta(hours=1)


class _BackdatedClock(SystemClock):
    """The system clock, shifted by `offset` (used only while the catalog is generated)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return super().now() + self.offset


def build(args: argparse.Namespace) -> Emulator:
    """An emulator whose catalogs were last edited an hour ago, every product pre-rendered."""
    rate, burst = args.rate, args.burst
    limit = RateLimitConfig(rate, burst or max(1, round(rate))) if rate else None
    cost = _cost(args.cost)
    ac = args.platform == "americommerce"
    config = EmulatorConfig(
        adobe=AdobeConfig(
            products=0 if ac else args.products, rate_limit=limit, latency=args.latency, cost=cost
        ),
        americommerce=AmeriCommerceConfig(
            products=args.products if ac else 0,
            static_tokens=(AC_TOKEN, *(f"{AC_TOKEN}-{n}" for n in range(args.stores))),
            call_limit_per_token=args.stores > 0,
            call_limit=args.call_limit or AC_UNLIMITED,
            call_window=args.window,
            other_app_calls=args.other_calls,
            latency=args.latency,
            cost=cost,
        ),
        seed=6,
    )
    clock = _BackdatedClock()
    clock.offset = -_BACKDATE
    emulator = Emulator(config, clock)
    clock.offset = timedelta(0)
    catalog = _platform(emulator, args.platform).catalog  # type: ignore[attr-defined]
    # Render every product once now, so no client pays the emulator's cold-cache cost.
    for slot in catalog.alive:
        catalog.render_bytes(slot)
    return emulator


def _cost(text: str | None) -> ServerCost | None:
    if not text:
        return None
    base, per_item, per_log10, workers = text.split(",")
    return ServerCost(float(base), float(per_item), float(per_log10), int(workers))


def _platform(emulator: Emulator, platform: str) -> PlatformEmulator:
    return emulator.americommerce if platform == "americommerce" else emulator.adobe


def mutate(emulator: Emulator, platform: str, count: int) -> int:
    """Change the price of `count` products spread evenly over the catalog (bumps updated_at)."""
    catalog = _platform(emulator, platform).catalog  # type: ignore[attr-defined]
    skus = list(catalog.skus())
    if count <= 0 or not skus:
        return 0
    step = max(1, len(skus) // count)
    chosen = skus[::step][:count]
    for n, sku in enumerate(chosen):
        catalog.update(sku, price=round(1.0 + n % 97 + 0.5, 2))
    return len(chosen)


def stats(emulator: Emulator, platform: str, meter: Meter) -> dict[str, Any]:
    """The platform's counters and the CPU this process has used so far. On AmeriCommerce,
    `rate_limited` counts 429s to the benchmark's client only; the other app's are apart."""
    served = _platform(emulator, platform)
    s = served.stats
    window = emulator.americommerce.window
    return {
        "requests": s.requests,
        "token_requests": s.token_requests,
        "rate_limited": s.rate_limited,
        "unauthorized": s.unauthorized,
        "other_app_calls": window.other_made if platform == "americommerce" else 0,
        "other_app_refused": window.other_refused if platform == "americommerce" else 0,
        "client_window_calls": dict(window.client_calls) if platform == "americommerce" else {},
        "server_s": round(served.server.spent, 3),  # type: ignore[attr-defined]
        "cpu_s": round(meter.stop().cpu_s, 3),
    }


async def serve(args: argparse.Namespace) -> None:
    """Serve until `quit` or end of input."""
    meter = Meter()
    emulator = build(args)
    async with emulator:
        _say({"url": emulator.url, "ims_token_url": emulator.ims_token_url})
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := (await reader.readline()).decode().split():
            command, rest = line[0], line[1:]
            if command == "stats":
                _say(stats(emulator, args.platform, meter))
            elif command == "mutate":
                _say({"mutated": mutate(emulator, args.platform, int(rest[0]))})
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
    parser.add_argument("--platform", choices=("adobe", "americommerce"), default="adobe")
    parser.add_argument("--call-limit", type=int, default=None)
    parser.add_argument("--other-calls", type=int, default=0)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument(
        "--stores",
        type=int,
        default=0,
        help="AmeriCommerce: one token and call window per store (tokens AC_TOKEN-0, -1, ...)",
    )
    parser.add_argument("--cost", default=None, help="base,per_item,per_log10,workers (seconds)")
    args = parser.parse_args(argv)
    pin_to_cpu(args.cpu)
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
