"""Replicas x small sources on one PostgreSQL: throughput, cost per replica, start delay, nothing lost.

    python -m benchmarks replicas [--replicas 3] [--sources 300] [--products 1000]
        [--interval 120] [--rounds 2] [--lease 10] [--poll 1] [--slots 8]
        [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

Real `syncd run` processes, one configuration, share a fresh PostgreSQL database and an emulator
(in this process) serving `--sources` AmeriCommerce stores, each with its own admin-console token
and call window (no limit), all of one `--products` catalog. Every source has the interval
schedule `--interval`: all are due at once at start (the first round, full scans), then on their
grid (incremental runs). The harness waits until every source has `--rounds` successful runs and
reports:

- **throughput** of the first round: products stored / (last full run's end - first one's start);
- **CPU seconds** (user + system, from /proc) and **peak RSS** (VmHWM) of each replica, and how
  many runs and distinct sources each one ran, and the most leases it held at once;
- **start delay**: a run's `started_at` minus the time it was due, the `next_run_at` its lease row
  held before it was claimed (sampled every 0.1 s; the database's clock, the replicas' on the
  same host); p50 / p95 / max of the first round (every source due at one moment: the herd) and of
  the later rounds apart;
- **nothing lost**: every source holds exactly the catalog (count, and the fingerprint of its
  (sku, content_hash) pairs equal to every other source's; the first source's payloads equal to
  the emulator's catalog), no run failed, and no two runs of one source overlap.

Writes `results/replicas-<replicas>x<sources>.json`; docs/SCALING.md quotes it. Past `--deadline`
(a machine too loaded for the shape) the figures so far are written, marked `"complete": false`,
and the command fails.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import psycopg

from benchmarks.emulator_proc import build
from benchmarks.environment import load, machine
from benchmarks.measure import Meter
from benchmarks.plan import AC_TOKEN
from benchmarks.processes import ROOT, HarnessError
from benchmarks.runner import Say
from benchmarks.stores import postgres_version, scratch_database
from syncd.emulator import Emulator

RESULTS = ROOT / "benchmarks" / "results"
_SAMPLE_S = 0.1
_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Shape:
    """What is measured: the fleet, the sources and the schedule."""

    replicas: int = 3
    sources: int = 300
    products: int = 1000
    interval: int = 120
    rounds: int = 2
    lease: float = 10.0
    poll: float = 1.0
    slots: int = 8
    deadline: float = 330.0
    logs: Path | None = None
    """Keep the replicas' logs (at level info) in this folder."""

    @property
    def names(self) -> list[str]:
        """The sources' names."""
        return [f"store{n:04d}" for n in range(self.sources)]


def _config(folder: Path, url: str, emulator: str, shape: Shape) -> Path:
    sources = "".join(
        f'\n[[sources]]\nname = "{name}"\nkind = "americommerce"\nbase_url = "{emulator}"\n'
        f'page_size = 100\nmax_concurrency = 2\nschedule = "{shape.interval}s"\n\n'
        f'[sources.auth]\nstatic_token = "{AC_TOKEN}-{n}"\n'
        for n, name in enumerate(shape.names)
    )
    path = folder / "syncd.toml"
    path.write_text(
        f'log_format = "json"\nlog_level = "{"info" if shape.logs else "warning"}"\n'
        f"shutdown_grace = 5\n\n"
        f'[store]\nurl = "{url}"\n\n'
        f"[replica]\nlease_seconds = {shape.lease}\npoll_interval = {shape.poll}\n"
        f"max_concurrent_runs = {shape.slots}\n{sources}"
    )
    return path


def proc_usage(pid: int) -> tuple[float, float, float]:
    """CPU seconds (user + system), RSS and peak RSS (MiB) of process `pid`, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    rest = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(rest[11]) + int(rest[12])) / _TICK
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return cpu, fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


@dataclass(slots=True)
class _Samples:
    """What the harness sees while the replicas run."""

    done: int = 0
    """Sources with `rounds` successful runs when the watch ended."""
    dues: dict[str, set[datetime]] = field(default_factory=dict)
    held_max: dict[str, int] = field(default_factory=dict)
    rss_max: dict[int, float] = field(default_factory=dict)

    def add(self, leases: Iterable[tuple[str, datetime, str | None]]) -> None:
        held: dict[str, int] = {}
        for source, next_run_at, owner in leases:
            self.dues.setdefault(source, set()).add(next_run_at)
            if owner is not None:
                held[owner] = held.get(owner, 0) + 1
        for owner, count in held.items():
            self.held_max[owner] = max(self.held_max.get(owner, 0), count)


async def _start(config: Path, log: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "syncd", "--config", str(config), "run",
            env=env, stdout=out, stderr=out, cwd=ROOT,
        )  # fmt: skip


async def _watch(
    url: str, shape: Shape, fleet: list[asyncio.subprocess.Process], say: Say
) -> _Samples:
    """Sample the lease rows and the replicas until every source has `rounds` successful runs, or
    the deadline (then `done` says how many had)."""
    samples = _Samples()
    started = time.monotonic()
    reported = -1
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while True:
            for proc in fleet:
                if proc.returncode is not None:
                    raise HarnessError(f"replica {proc.pid} exited with {proc.returncode}")
                samples.rss_max[proc.pid] = max(
                    samples.rss_max.get(proc.pid, 0.0), proc_usage(proc.pid)[1]
                )
            try:
                cursor = await conn.execute(
                    "SELECT source, next_run_at, CASE WHEN expires_at > clock_timestamp() "
                    "THEN owner END FROM leases"
                )
                samples.add(await cursor.fetchall())
                cursor = await conn.execute(
                    "SELECT count(*) FROM (SELECT source FROM sync_runs WHERE status = "
                    "'succeeded' GROUP BY source HAVING count(*) >= %s) AS done",
                    (shape.rounds,),
                )
                row = await cursor.fetchone()
                done = int(row[0]) if row else 0
            except psycopg.errors.UndefinedTable:
                done = 0  # the replicas have not created the schema yet
            elapsed = time.monotonic() - started
            if done != reported and (done == shape.sources or int(elapsed) % 10 == 0):
                say(f"  {elapsed:5.0f} s: {done}/{shape.sources} sources with {shape.rounds} runs")
                reported = done
            samples.done = done
            if done == shape.sources or elapsed > shape.deadline:
                return samples
            await asyncio.sleep(_SAMPLE_S)


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    """Count, p50, p95 (nearest rank) and max of `values`, in seconds rounded to ms."""
    if not values:
        return {"n": 0, "p50_s": None, "p95_s": None, "max_s": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {
        "n": len(ordered),
        "p50_s": rank(0.5),
        "p95_s": rank(0.95),
        "max_s": round(max(ordered), 3),
    }


Run = tuple[str, str, str, str, datetime, datetime | None, int, int]


def _runs(url: str) -> list[Run]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT source, owner, kind, status, started_at, finished_at, items_seen, requests "
            "FROM sync_runs ORDER BY source, started_at"
        ).fetchall()
    return [tuple(r) for r in rows]


def _delays(runs: list[Run], dues: dict[str, set[datetime]]) -> dict[str, Any]:
    """Each run's start minus the due time it served: the latest sampled `next_run_at` of its
    source at or before its start (the row changes only when the previous run is released)."""
    first: list[float] = []
    later: list[float] = []
    unpaired = 0
    for source, spans in itertools.groupby(runs, key=lambda r: r[0]):
        for n, run in enumerate(spans):
            served = [d for d in dues.get(source, ()) if d <= run[4]]
            if not served:
                unpaired += 1
                continue
            (first if n == 0 else later).append((run[4] - max(served)).total_seconds())
    return {"first_round": percentiles(first), "later_rounds": percentiles(later),
            "runs_without_a_sampled_due_time": unpaired}  # fmt: skip


def _lost(url: str, emulator: Emulator, runs: list[Run], shape: Shape) -> dict[str, Any]:
    """What the store holds against the emulator's catalog, and the runs' overlaps."""
    expected = emulator.americommerce.catalog.snapshot()
    with psycopg.connect(url, autocommit=True) as conn:
        per_source = conn.execute(
            "SELECT source, count(*), md5(string_agg(sku || ':' || content_hash, ',' ORDER BY sku))"
            " FROM products WHERE deleted_at IS NULL GROUP BY source"
        ).fetchall()
        first = conn.execute(
            "SELECT sku, payload::text FROM products WHERE source = %s AND deleted_at IS NULL",
            (shape.names[0],),
        ).fetchall()
        tombstones = conn.execute(
            "SELECT count(*) FROM products WHERE deleted_at IS NOT NULL"
        ).fetchone()
    fingerprints = {str(f) for _, _, f in per_source}
    overlaps = 0
    for _, spans in itertools.groupby(runs, key=lambda r: r[0]):
        for a, b in itertools.pairwise(spans):
            if a[5] is None or a[5] > b[4]:
                overlaps += 1
    return {
        "sources_stored": len(per_source),
        "sources_with_every_product": sum(1 for _, n, _ in per_source if n == len(expected)),
        "distinct_fingerprints": len(fingerprints),
        "first_source_equals_catalog": {s: json.loads(p) for s, p in first} == expected,
        "tombstones": int(tombstones[0]) if tombstones else -1,
        "runs_failed": sum(1 for r in runs if r[3] == "failed"),
        # Stopped by the drain at the end (SIGTERM), or killed after it: not a loss.
        "runs_cancelled_or_unfinished": sum(1 for r in runs if r[3] in ("cancelled", "running")),
        "overlapping_runs": overlaps,
    }


def _per_replica(
    runs: list[Run], usage: dict[int, tuple[float, float, float]], samples: _Samples
) -> list[dict[str, Any]]:
    out = []
    for pid, (cpu, _rss, peak) in sorted(usage.items()):
        mine = [r for r in runs if r[1] is not None and r[1].split(":")[1] == str(pid)]
        owner = mine[0][1] if mine else None
        out.append({
            "pid": pid,
            "cpu_s": round(cpu, 2),
            "peak_rss_mb": round(max(peak, samples.rss_max.get(pid, 0.0)), 1),
            "runs": len(mine),
            "full_runs": sum(1 for r in mine if r[2] == "full"),
            "sources_run": len({r[0] for r in mine}),
            "most_leases_held_at_once": samples.held_max.get(owner, 0) if owner else 0,
        })  # fmt: skip
    return out


def _throughput(runs: list[Run], shape: Shape) -> dict[str, Any]:
    full = [r for r in runs if r[2] == "full" and r[5] is not None]
    if not full:
        return {"full_runs": 0, "runs": len(runs)}
    start = min(r[4] for r in full)
    end = max(r[5] for r in full if r[5] is not None)
    products = sum(r[6] for r in full)
    seconds = (end - start).total_seconds()
    return {
        "full_runs": len(full),
        "products": products,
        "first_round_s": round(seconds, 2),
        "products_per_s": round(products / seconds),
        "requests": sum(r[7] for r in runs),
        "runs": len(runs),
    }


async def _stop(fleet: list[asyncio.subprocess.Process]) -> list[float]:
    """SIGTERM every replica (a clean stop drains its runs for `shutdown_grace`); how long each
    took to exit (one still running after 30 s is killed)."""
    began = time.monotonic()

    async def one(proc: asyncio.subprocess.Process) -> float:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        return round(time.monotonic() - began, 1)

    return list(await asyncio.gather(*(one(proc) for proc in fleet)))


async def _measure(server: str, shape: Shape, say: Say) -> dict[str, Any]:
    args = argparse.Namespace(
        products=shape.products, rate=None, burst=None, latency=0.0, cost=None,
        platform="americommerce", stores=shape.sources, call_limit=None, other_calls=0,
        window=10.0,
    )  # fmt: skip
    with TemporaryDirectory() as tmp, scratch_database(server) as url:
        folder = shape.logs or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        meter = Meter()
        async with build(args) as emulator:
            config = _config(folder, url, emulator.url, shape)
            fleet = [await _start(config, folder / f"r{i}.log") for i in range(shape.replicas)]
            began = time.monotonic()
            try:
                samples = await _watch(url, shape, fleet, say)
                wall = time.monotonic() - began
                usage = {p.pid: proc_usage(p.pid) for p in fleet}
            except BaseException:
                for i in range(shape.replicas):
                    tail = (folder / f"r{i}.log").read_text(errors="replace")[-1500:]
                    say(f"replica {i} log tail:\n{tail}")
                raise
            finally:
                stopped = await _stop(fleet)
            harness = meter.stop()
            runs = _runs(url)
            lost = _lost(url, emulator, runs, shape)
    return {
        "complete": samples.done == shape.sources,
        "sources_done": samples.done,
        "wall_s": round(wall, 1),
        "throughput": _throughput(runs, shape),
        "replicas": _per_replica(runs, usage, samples),
        "start_delay": _delays(runs, samples.dues),
        "nothing_lost": lost,
        "emulator_and_harness_cpu_s": round(harness.cpu_s, 2),
        "exit_codes": [p.returncode for p in fleet],
        "stop_s": stopped,
    }


def main(server: str, shape: Shape, command: str, say: Say) -> Path:
    """Run the fleet, write the JSON result (returns its path); HarnessError if anything was lost."""
    before = load()
    figures = asyncio.run(_measure(server, shape, say))
    document = {
        "command": command,
        "machine": machine(ROOT),
        "postgres": postgres_version(server),
        "load_before": before,
        "load_after": load(),
        "shape": {k: getattr(shape, k) for k in Shape.__dataclass_fields__ if k != "logs"},
        **figures,
    }
    path = RESULTS / f"replicas-{shape.replicas}x{shape.sources}.json"
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    if not figures["complete"]:
        raise HarnessError(
            f"only {figures['sources_done']}/{shape.sources} sources had {shape.rounds} runs "
            f"within {shape.deadline:.0f} s (partial figures in {path})"
        )
    t, d = figures["throughput"], figures["start_delay"]
    say(
        f"{shape.replicas} replicas x {shape.sources} sources: {t['products_per_s']} products/s, "
        f"CPU s {[r['cpu_s'] for r in figures['replicas']]}, "
        f"peak RSS MB {[r['peak_rss_mb'] for r in figures['replicas']]}, start delay p95 "
        f"{d['first_round']['p95_s']} s (first round) / {d['later_rounds']['p95_s']} s (later)"
    )
    lost = figures["nothing_lost"]
    exact = (
        lost["sources_with_every_product"] == shape.sources
        and lost["distinct_fingerprints"] == 1
        and lost["first_source_equals_catalog"]
        and lost["tombstones"] == 0
        and lost["runs_failed"] == 0
        and lost["overlapping_runs"] == 0
    )
    if not exact:
        raise HarnessError(f"something was lost or overlapped: {lost} (see {path})")
    return path
