"""syncd as an operator runs it, in a process of its own: one full or incremental run, measured.

    python -m benchmarks.syncd_client --url URL --token-url URL --db PATH --kind full
        [--concurrency 8] [--page-size 100] [--rate-limit R --rate-burst B] [--time-box S]
        [--cpu 0] [--store-url postgresql://...]
        [--platform americommerce --call-window 10 --call-reserve 3]
        [--profile PATH]

Prints a `ClientOutcome` as JSON on the last line of stdout; logs (warnings up) go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.measure import (
    Meter,
    peak_rss_mb,
    pin_to_cpu,
    process_cpu_seconds,
    thread_cpu_seconds,
)
from benchmarks.outcome import ClientOutcome, RunKind
from benchmarks.plan import AC_TOKEN
from benchmarks.stages import stage_seconds
from syncd.config import (
    AdobeCommerceSourceSettings,
    AmeriCommerceAuthSettings,
    AmeriCommerceSourceSettings,
    ExactSettings,
    ImsAuthSettings,
    Settings,
    SourceSettings,
    StoreSettings,
)
from syncd.config.feed import ChangesSettings
from syncd.emulator import AdobeConfig
from syncd.gcpolicy import tune_for_streaming
from syncd.logging import configure_logging
from syncd.runtime import Runtime
from syncd.store.factory import AnyStore
from syncd.store.postgres import PostgresStore

SOURCE = "bench"


def settings(args: argparse.Namespace) -> Settings:
    """One source on the emulator, configured as an operator would: the store's documented rate
    limit as `rate_limit` and `rate_burst` when the harness tells it (else none: the adaptive
    rate finds it), on AmeriCommerce the other apps' calls as `call_limit_reserve`; everything
    else at its default."""
    source: SourceSettings
    if args.platform == "americommerce":
        source = AmeriCommerceSourceSettings(
            name=SOURCE,
            kind="americommerce",
            base_url=args.url,
            page_size=args.page_size,
            max_concurrency=args.concurrency,
            call_window=args.call_window,
            call_limit_reserve=args.call_reserve,
            auth=AmeriCommerceAuthSettings(static_token=AC_TOKEN),  # type: ignore[arg-type]
        )
        return ExactSettings(store=StoreSettings(path=args.db), sources=(source,))
    creds = AdobeConfig()
    source = AdobeCommerceSourceSettings(
        name=SOURCE,
        kind="adobe_commerce",
        base_url=args.url,
        page_size=args.page_size,
        max_concurrency=args.concurrency,
        rate_limit=args.rate_limit,
        rate_burst=args.rate_burst,
        auth=ImsAuthSettings(
            token_url=args.token_url,
            client_id=creds.client_id,
            client_secret=creds.client_secret,  # type: ignore[arg-type]
            org_id=creds.org_id,
        ),
    )
    store = StoreSettings(url=args.store_url) if args.store_url else StoreSettings(path=args.db)
    changes = ChangesSettings(enabled=not args.no_changes, store_payloads=args.change_payloads)
    return ExactSettings(store=store, sources=(source,), changes=changes)


async def run(args: argparse.Namespace) -> ClientOutcome:
    """One run of kind `args.kind`, cancelled after `args.time_box` seconds if given.

    Wall and CPU time cover the run itself, from its first query to its last commit (what a
    daemon spends per scheduled run): not the process start, opening the store, or closing it.
    """
    kind: RunKind = args.kind
    boxed = False
    async with Runtime(settings(args)) as runtime:
        server_before = await server_cpu(runtime.store)
        main_before, other_before = thread_cpu_seconds()
        meter = Meter()
        try:
            async with asyncio.timeout(args.time_box):
                await runtime.sync(SOURCE, kind)
        except TimeoutError:
            boxed = True  # the engine closed the run as `cancelled` with its counters
        usage = meter.stop()
        # Read while the SQLite thread is alive: it ends with the store.
        main_cpu, other_cpu = thread_cpu_seconds()
        server_after = await server_cpu(runtime.store)
        (record,) = await runtime.store.runs(SOURCE, limit=1)
        stored = await runtime.store.count_products(SOURCE)
    t = record.totals
    return ClientOutcome(
        tool="syncd",
        kind=kind,
        status=record.status,
        concurrency=args.concurrency,
        wall_s=round(usage.wall_s, 4),
        cpu_s=round(usage.cpu_s, 4),
        peak_rss_mb=round(peak_rss_mb(), 1),
        products=t.items_seen,
        pages=t.pages,
        requests=t.requests,
        rate_limited=t.rate_limited,
        stored=stored,
        main_thread_cpu_s=round(main_cpu - main_before, 4),
        other_threads_cpu_s=round(other_cpu - other_before, 4),
        time_boxed=boxed,
        error=record.error,
        server_cpu_s=server_spent(server_before, server_after),
    )


async def server_cpu(store: AnyStore) -> dict[int, float] | None:
    """CPU seconds so far of each PostgreSQL backend on the store's database (None: SQLite).

    The server runs on this machine (the benchmarks' setup), so /proc has its processes; the
    pool keeps its connections for the run, so a backend seen after the run saw all its pages.
    """
    if not isinstance(store, PostgresStore):
        return None
    rows = await store.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND backend_type = 'client backend'"
    )
    return {
        pid: seconds for (pid,) in rows if (seconds := process_cpu_seconds(int(pid))) is not None
    }


def server_spent(before: dict[int, float] | None, after: dict[int, float] | None) -> float | None:
    """The backends' CPU seconds between two `server_cpu` readings (a new one counts whole)."""
    if before is None or after is None:
        return None
    return round(sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items()), 4)


def profiled(args: argparse.Namespace) -> ClientOutcome:
    """`run` under pyinstrument: the text report goes to `args.profile`, stage seconds to the
    outcome."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.001, async_mode="disabled")
    with profiler:
        outcome = asyncio.run(run(args))
    Path(args.profile).write_text(profiler.output_text(unicode=False, show_all=False))
    root = profiler.last_session.root_frame() if profiler.last_session else None
    stages = stage_seconds(root) if root is not None else {}
    return replace(outcome, stages=stages)


def parser() -> argparse.ArgumentParser:
    """The client's command line."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.syncd_client")
    p.add_argument("--url", required=True)
    p.add_argument("--token-url", required=True)
    p.add_argument("--db", type=Path, required=True)
    p.add_argument("--store-url", default=None, help="a PostgreSQL database instead of --db")
    p.add_argument("--kind", choices=("full", "incremental"), required=True)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--page-size", type=int, default=100)
    p.add_argument("--rate-limit", type=float, default=None)
    p.add_argument("--rate-burst", type=int, default=None)
    p.add_argument("--time-box", type=float, default=None)
    p.add_argument("--cpu", type=int, default=None)
    p.add_argument("--profile", type=Path, default=None)
    p.add_argument("--no-changes", action="store_true", help="the change feed off")
    p.add_argument("--change-payloads", action="store_true", help="feed entries copy payloads")
    p.add_argument("--platform", choices=("adobe", "americommerce"), default="adobe")
    p.add_argument("--call-window", type=float, default=10.0)
    p.add_argument("--call-reserve", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> None:
    """Parse, pin, run, print the outcome."""
    args: Any = parser().parse_args(argv)
    pin_to_cpu(args.cpu)
    tune_for_streaming()  # as the `syncd` console script does
    configure_logging(os.environ.get("SYNCD_BENCH_LOG", "warning"), "json", sys.stderr)
    outcome = profiled(args) if args.profile else asyncio.run(run(args))
    print(outcome.to_json(), flush=True)


if __name__ == "__main__":
    main()
