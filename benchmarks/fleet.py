"""Many stores in one process: `syncd run`'s daemon with N AmeriCommerce sources, measured.

    python -m benchmarks.fleet --url URL --db PATH --sources 1000 [--interval 30]
        [--seconds 60] [--cpu 0]

Every source is its own store on the emulator (its own admin-console token, and its own call
window: `emulator_proc --stores N`), of the same catalog, on an interval schedule. The daemon
runs in this process as `syncd run` runs it (`Runtime` + `Daemon`), for `--seconds`, while this
process samples what the issue asks for:

- **RSS** (VmRSS) before the runtime opens, once every source is built and scheduled, and every
  second after: per source is the growth over the first reading divided by N. *Idle* is the
  median of the samples taken while no run was going.
- **CPU seconds** of the whole process (all threads) over the measured stretch, per source run.
- **Start delay**: from a source's due time (as APScheduler submitted its job) to the moment the
  daemon began that run (`Runtime.sync`, after reading the source's state); p50, p95 and max of
  the runs after each source's first, and apart the first runs (every interval source is due at
  start-up, all at once).
- **Event-loop lag**: how late a 50 ms sleep wakes up, sampled throughout; p95 and max.

Prints one JSON line with those figures last on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import time
import tracemalloc
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.measure import pin_to_cpu
from benchmarks.plan import AC_TOKEN
from syncd.config import (
    AmeriCommerceAuthSettings,
    AmeriCommerceSourceSettings,
    ExactSettings,
    Settings,
    StoreSettings,
)
from syncd.daemon import Daemon
from syncd.gcpolicy import tune_for_streaming
from syncd.logging import configure_logging
from syncd.runtime import Runtime

_LAG_PERIOD = 0.05


def rss_mb() -> float:
    """This process's resident set size now, in MiB (Linux /proc; peak RSS elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """CPU seconds of every thread of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def settings(args: argparse.Namespace) -> Settings:
    """N AmeriCommerce sources, one per emulated store, all on the same interval."""
    sources = tuple(
        AmeriCommerceSourceSettings(
            name=f"store{n:04d}",
            kind="americommerce",
            base_url=args.url,
            page_size=100,
            max_concurrency=2,
            schedule=f"{args.interval}s",
            auth=AmeriCommerceAuthSettings(static_token=f"{AC_TOKEN}-{n}"),  # type: ignore[arg-type]
        )
        for n in range(args.sources)
    )
    return ExactSettings(store=StoreSettings(path=args.db), sources=sources)


def percentile(values: list[float], q: float) -> float | None:
    """The `q` quantile (nearest rank), None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class _Watch:
    """The samples taken while the daemon runs."""

    def __init__(self) -> None:
        self.submitted: dict[str, datetime] = {}
        self.delays: list[float] = []  # runs after a source's first (warm)
        self.first_delays: list[float] = []  # each source's first run (the start-up herd)
        self.started: set[str] = set()
        self.lags: list[float] = []
        self.idle_rss: list[float] = []
        self.busy_rss: list[float] = []
        self.runs = 0

    def on_submitted(self, event: Any) -> None:
        """APScheduler submitted a job for its scheduled time(s)."""
        times = getattr(event, "scheduled_run_times", None)
        if times:
            self.submitted[event.job_id] = times[-1]

    async def lag_probe(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(_LAG_PERIOD)
            self.lags.append(max(0.0, loop.time() - before - _LAG_PERIOD))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the daemon, watch it for `args.seconds`, stop it; the figures."""
    rss_start = rss_mb()
    watch = _Watch()
    async with Runtime(settings(args)) as runtime:
        rss_built = rss_mb()
        daemon = Daemon(runtime, handle_signals=False)
        original = runtime.sync

        async def timed(name: str, kind: Any = None) -> Any:
            # The run starts here, once the daemon has read the source's state: a run that is
            # due but waits for the event loop or the store's thread is late by that much.
            due = watch.submitted.pop(name, None)
            if due is not None:
                delay = (runtime.clock.now() - due).total_seconds()
                warm = name in watch.started
                (watch.delays if warm else watch.first_delays).append(delay)
            watch.started.add(name)
            watch.runs += 1
            return await original(name, kind)

        runtime.sync = timed  # type: ignore[method-assign,assignment]
        from apscheduler.events import EVENT_JOB_SUBMITTED

        scheduler = daemon._scheduler._scheduler
        scheduler.add_listener(watch.on_submitted, EVENT_JOB_SUBMITTED)
        if args.trace:
            tracemalloc.start(4)
        async with daemon:
            rss_scheduled = rss_mb()
            cpu_before, started = cpu_seconds(), time.monotonic()
            probe = asyncio.create_task(watch.lag_probe())
            try:
                while time.monotonic() - started < args.seconds:
                    await asyncio.sleep(1.0)
                    busy = daemon._active
                    (watch.busy_rss if busy else watch.idle_rss).append(rss_mb())
            finally:
                probe.cancel()
            cpu = cpu_seconds() - cpu_before
            wall = time.monotonic() - started
            if args.trace:
                _trace(args.trace, args.sources)
            daemon.stop()
        rss_end = rss_mb()
    n = args.sources
    idle = statistics.median(watch.idle_rss) if watch.idle_rss else None
    return {
        "sources": n,
        "interval_s": args.interval,
        "seconds": round(wall, 1),
        "runs": watch.runs,
        "rss_start_mb": round(rss_start, 1),
        "rss_built_mb": round(rss_built, 1),
        "rss_scheduled_mb": round(rss_scheduled, 1),
        "rss_idle_mb": None if idle is None else round(idle, 1),
        "rss_busy_max_mb": round(max(watch.busy_rss), 1) if watch.busy_rss else None,
        "rss_end_mb": round(rss_end, 1),
        "rss_per_source_scheduled_mb": round((rss_scheduled - rss_start) / n, 3),
        "rss_per_idle_source_mb": None if idle is None else round((idle - rss_start) / n, 3),
        # Without an idle moment (a run always going), the end's figure bounds it from above.
        "rss_per_source_end_mb": round((rss_end - rss_start) / n, 3),
        "cpu_s": round(cpu, 2),
        "cpu_s_per_run": round(cpu / watch.runs, 4) if watch.runs else None,
        "cpu_s_per_source": round(cpu / n, 4),
        "first_start_delay_p95_s": percentile(watch.first_delays, 0.95),
        "first_start_delay_max_s": max(watch.first_delays, default=None),
        "start_delay_p50_s": percentile(watch.delays, 0.5),
        "start_delay_p95_s": percentile(watch.delays, 0.95),
        "start_delay_max_s": max(watch.delays, default=None),
        "loop_lag_p95_ms": None
        if not watch.lags
        else round(percentile(watch.lags, 0.95) * 1000, 1),  # type: ignore[operator]
        "loop_lag_max_ms": None if not watch.lags else round(max(watch.lags) * 1000, 1),
    }


def _trace(path: Path, sources: int) -> None:
    """What holds memory now, by where it was allocated (tracemalloc), biggest first."""
    snapshot = tracemalloc.take_snapshot()
    stats = snapshot.statistics("traceback")[:40]
    current, peak = tracemalloc.get_traced_memory()
    lines = [
        f"tracemalloc after the runs, {sources} sources: {current / 2**20:.1f} MiB traced now "
        f"(peak {peak / 2**20:.1f} MiB), RSS {rss_mb():.1f} MiB; top allocation sites"
    ]
    for stat in stats:
        lines.append(f"{stat.size / 1024:10.1f} KiB {stat.count:8d} blocks")
        lines += [f"      {frame}" for frame in stat.traceback.format()[-8:]]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    """Parse, pin, run, print the figures."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.fleet")
    p.add_argument("--url", required=True)
    p.add_argument("--db", type=Path, required=True)
    p.add_argument("--sources", type=int, default=1000)
    p.add_argument("--interval", type=int, default=30)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--cpu", type=int, default=None)
    p.add_argument("--trace", type=Path, default=None, help="write a tracemalloc report here")
    args = p.parse_args(argv)
    pin_to_cpu(args.cpu)
    tune_for_streaming()
    configure_logging(os.environ.get("SYNCD_BENCH_LOG", "warning"), "json", sys.stderr)
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
