"""Runs the plan: per case an emulator process, then syncd full, 1% change, syncd incremental,
and the baseline, each client in a fresh process; then the concurrency sweep. Writes JSON."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.environment import load, machine
from benchmarks.measure import cpu_count
from benchmarks.metrics import delta, run_figures
from benchmarks.plan import (
    RATE_VARIANTS,
    UNTOLD_NEXT,
    UNTOLD_VARIANTS,
    Plan,
    Profile,
    case_name,
    size_label,
)
from benchmarks.processes import ROOT, EmulatorProcess, run_client, run_json

RESULTS = ROOT / "benchmarks" / "results"
# A client run that takes longer than this has hung; no planned case comes close.
CLIENT_TIMEOUT = 3600.0
# The many-stores case: every source on this interval (seconds): short, yet longer than the
# first cycle (a thousand full syncs of 1k products) takes on one core.
FLEET_INTERVAL = 120

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


class Runner:
    """Executes a `Plan`, writing `<results>/<case>.json` per case and `sweep-*.json`."""

    def __init__(
        self,
        plan: Plan,
        results: Path = RESULTS,
        say: Say = _quiet,
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.plan = plan
        # Seeded: the same command draws the same start phases (see _next_window).
        self.rng = rng or random.Random(17)
        self.sleep = sleep
        self.results = results
        # One scratch folder per invocation: two harness runs at once (a rate-limited case beside
        # another) must not delete each other's databases when one of them finishes.
        self.scratch = results / "tmp" / str(os.getpid())
        self.say = say
        two_cpus = plan.pin and cpu_count() >= 2
        # "One core": the client on CPU 0, the emulator on CPU 1.
        self.client_cpu = 0 if two_cpus else None
        self.emulator_cpu = 1 if two_cpus else None

    def run(self, command: str) -> list[Path]:
        """Every case, then the sweep; returns the files written."""
        self.results.mkdir(parents=True, exist_ok=True)
        self.scratch.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        largest = max((n for n in self.plan.sizes if n <= 100_000), default=None)
        for profile, size in self.plan.cases():
            profile_stages = (
                self.plan.profile_stages and profile.name == "nolimit" and size == largest
            )
            written.append(self._case(profile, size, command, profile_stages))
        if self.plan.fleet:
            written.append(self._fleet(command))
        if self.plan.sweep:
            written.append(self._sweep(command))
            if any(p.platform == "americommerce" for p in self.plan.profiles):
                from benchmarks.plan import PROFILES

                ac = PROFILES[self.plan.ac_sweep_profile]
                window = next(p.window for p in self.plan.profiles if p.platform == "americommerce")
                written.append(self._sweep_of(replace(ac, window=window), command))
        if self.plan.feed_repeats and largest is not None:
            written.append(self._feed_cost(largest, command))
        shutil.rmtree(self.scratch, ignore_errors=True)
        return written

    # -- one case --------------------------------------------------------------------------------

    def _case(self, profile: Profile, size: int, command: str, profile_stages: bool) -> Path:
        name = case_name(profile, size)
        self.say(f"{name}: {profile.describe()}, {size} products")
        plan = self.plan
        boxed = profile.rate_limited
        record: dict[str, Any] = {
            "case": name,
            "kind": "case",
            "profile": _profile_json(profile),
            "products": size,
            "page_size": plan.page_size,
            "concurrency": plan.concurrency,
            "repeats": plan.repeats,
            "time_box_s": plan.time_box if boxed else None,
            "command": command,
            "machine": machine(ROOT),
            "load_before": load(),
            "client_cpu": self.client_cpu,
            "emulator_cpu": self.emulator_cpu,
            "runs": [],
        }
        runs: list[dict[str, Any]] = record["runs"]
        with self._emulator(profile, size) as emu:
            for repeat in range(plan.repeats):
                self._next_window(profile, first=not repeat)
                for variant in _variants(profile):
                    # The next untold sync runs on the first one's store, where the search it
                    # made is saved with the source's pace.
                    if variant != UNTOLD_NEXT:
                        db = self._fresh_db(f"{name}-{variant}")
                    # Not told the limit, syncd first searches for it: the goal is the share of
                    # the limit over a whole full sync, which a time box would cut short.
                    full = self._syncd(
                        emu, profile, db, "full", plan.concurrency,
                        boxed and variant not in UNTOLD_VARIANTS, variant=variant,
                    )  # fmt: skip
                    runs.append(full)
                    if variant != _variants(profile)[0]:
                        continue
                    if full["status"] == "succeeded":
                        changed = emu.mutate(max(1, math.floor(size * plan.change_share)))
                        record["changed"] = changed
                        runs.append(
                            self._syncd(
                                emu, profile, db, "incremental", plan.concurrency, boxed,
                                variant=variant,
                            )
                        )  # fmt: skip
                    elif repeat == 0:
                        record["incremental_skipped"] = (
                            f"the full run ended {full['status']} (time box {plan.time_box:g} s)"
                        )
                if plan.baseline and profile.platform == "adobe":
                    for concurrency in (1, plan.concurrency):
                        db = self._fresh_db(f"{name}-baseline-{concurrency}")
                        runs.append(self._baseline(emu, profile, db, boxed, concurrency))
            if profile_stages:
                record["stages"] = self._stages(emu, profile, name)
        if profile.platform == "americommerce" and profile.share is not None:
            record["small"] = self._small_ac(profile, name)
        record["load_after"] = load()
        return self._write(name, record)

    def _next_window(self, profile: Profile, *, first: bool = False) -> None:
        """Before each repeat on a call window, the first included: wait a random part of a
        window, after (between repeats) one whole window, so that the previous repeat's calls
        are not in the next one's first window, which it cannot tell from the other app's on a
        fresh database. The call-window measure averages over where in a window a run starts:
        back to back, each repeat started about a second later in the window than the one
        before, and the first always about a second after the emulator's windows began (its
        start-up and the client's), a phase where a 60-s box closes a second into its last
        window, before a burst timed by a boundary not yet learned to the second can leave."""
        if profile.call_limit is None:
            return
        pause = (0.0 if first else profile.window) + self.rng.uniform(0, profile.window)
        what = "first repeat" if first else "next repeat"
        self.say(f"  {what} in {pause:.1f} s (a new window, at a random phase)")
        self.sleep(pause)

    def _fleet(self, command: str) -> Path:
        """Many stores in one daemon process (benchmarks/fleet.py): RSS and CPU per source,
        start delay, event-loop lag."""
        plan = self.plan
        n = plan.fleet
        name = f"fleet-{n}"
        self.say(f"{name}: {n} AmeriCommerce stores of {plan.fleet_products} products each")
        # Each store has its own 20-call window: a source's first full run (11 requests) fits
        # in one, as with a store on a plan of its own.
        profile = Profile("fleet", platform="americommerce", call_limit=20, cost=None)
        record: dict[str, Any] = {
            "case": name,
            "kind": "fleet",
            "profile": _profile_json(profile),
            "products": plan.fleet_products,
            "products_per_source": plan.fleet_products,
            "sources": n,
            "interval_s": FLEET_INTERVAL,
            "seconds": plan.fleet_seconds,
            "command": command,
            "machine": machine(ROOT),
            "load_before": load(),
            "client_cpu": self.client_cpu,
            "emulator_cpu": self.emulator_cpu,
            "runs": [],
        }
        emulator = EmulatorProcess(
            plan.fleet_products,
            cpu=self.emulator_cpu,
            extra=["--platform", "americommerce", "--call-limit", "20", "--stores", str(n)],
        )
        with emulator as emu:
            db = self._fresh_db(name)
            args = ["--url", emu.url, "--db", str(db), "--sources", str(n)]
            args += ["--interval", str(FLEET_INTERVAL), "--seconds", str(plan.fleet_seconds)]
            if self.client_cpu is not None:
                args += ["--cpu", str(self.client_cpu)]
            figures = run_json("benchmarks.fleet", args, CLIENT_TIMEOUT)
        record["figures"] = figures
        self.say(f"  {figures}")
        record["load_after"] = load()
        return self._write(name, record)

    def _small_ac(self, profile: Profile, name: str) -> dict[str, Any]:
        """A store of fewer pages than the window's share: the sync must not wait for a window
        boundary (it used to wait for one it had not learned yet)."""
        # A sync of `pages` pages also reads one past them (or verifies): one request more.
        pages = max(1, min(self.plan.small_ac_pages, (profile.share or 2) - 1))
        with self._emulator(profile, pages * self.plan.page_size) as emu:
            db = self._fresh_db(f"{name}-small")
            row = self._syncd(
                emu, profile, db, "full", self.plan.concurrency, False, variant="small"
            )
        row["window_s"] = profile.window
        return row

    def _sweep(self, command: str) -> Path:
        plan = self.plan
        from benchmarks.plan import PROFILES

        profile = PROFILES[plan.sweep_profile]
        return self._sweep_of(profile, command)

    def _sweep_of(self, profile: Profile, command: str) -> Path:
        plan = self.plan
        size = plan.sweep_size()
        name = f"sweep-{profile.name}-{size_label(size)}"
        self.say(f"{name}: syncd at concurrency {', '.join(map(str, plan.sweep))} vs the baseline")
        record: dict[str, Any] = {
            "case": name,
            "kind": "sweep",
            "profile": _profile_json(profile),
            "products": size,
            "page_size": plan.page_size,
            "command": command,
            "machine": machine(ROOT),
            "load_before": load(),
            "client_cpu": self.client_cpu,
            "emulator_cpu": self.emulator_cpu,
            "runs": [],
        }
        record["repeats"] = plan.sweep_repeats
        with self._emulator(profile, size) as emu:
            # A 10k-product run lasts about a second: the chart plots the median of a few.
            for _ in range(plan.sweep_repeats):
                for concurrency in plan.sweep:
                    db = self._fresh_db(f"{name}-{concurrency}")
                    row = self._syncd(emu, profile, db, "full", concurrency, False)
                    record["runs"].append(row)
                if profile.platform == "adobe" and plan.baseline:
                    for concurrency in sorted({1, plan.concurrency}):
                        db = self._fresh_db(f"{name}-baseline-{concurrency}")
                        record["runs"].append(self._baseline(emu, profile, db, False, concurrency))
        record["load_after"] = load()
        return self._write(name, record)

    def _feed_cost(self, size: int, command: str) -> Path:
        """Full syncs with the change feed on and off, interleaved so that drift in the machine's
        load hits both alike (benchmarks/feedcost.py renders them)."""
        from benchmarks.plan import PROFILES

        profile = PROFILES["nolimit"]
        name = f"feedcost-{profile.name}-{size_label(size)}"
        repeats = self.plan.feed_repeats
        self.say(f"{name}: full syncs with the change feed on and off, {repeats} each")
        record: dict[str, Any] = {
            "case": name,
            "kind": "feedcost",
            "products": size,
            "page_size": self.plan.page_size,
            "concurrency": self.plan.concurrency,
            "command": command,
            "machine": machine(ROOT),
            "load_before": load(),
            "runs": [],
        }
        modes = {"on": (), "off": ("--no-changes",), "payloads": ("--change-payloads",)}
        with self._emulator(profile, size) as emu:
            for i in range(repeats):
                order = list(modes)[i % 3 :] + list(modes)[: i % 3]  # rotate: drift hits all alike
                for feed in order:
                    db = self._fresh_db(f"{name}-{feed}")
                    row = self._syncd(
                        emu, profile, db, "full", self.plan.concurrency, False, modes[feed]
                    )
                    record["runs"].append({**row, "feed": feed})
        record["load_after"] = load()
        return self._write(name, record)

    # -- clients ---------------------------------------------------------------------------------

    def _emulator(self, profile: Profile, size: int) -> EmulatorProcess:
        extra = ["--platform", profile.platform, "--window", str(profile.window)]
        if profile.call_limit is not None:
            extra += ["--call-limit", str(profile.call_limit)]
            extra += ["--other-calls", str(profile.other_calls)]
        if profile.cost is not None:
            c = profile.cost
            extra += ["--cost", f"{c.base},{c.per_item},{c.per_log10_catalog},{c.workers}"]
        return EmulatorProcess(
            size,
            rate=profile.rate,
            burst=profile.burst,
            latency=profile.latency,
            cpu=self.emulator_cpu,
            extra=extra,
        )

    def _common(self, emu: EmulatorProcess, db: Path, boxed: bool) -> list[str]:
        args = ["--url", emu.url, "--token-url", emu.token_url, "--db", str(db)]
        args += ["--page-size", str(self.plan.page_size)]
        if boxed:
            args += ["--time-box", str(self.plan.time_box)]
        if self.client_cpu is not None:
            args += ["--cpu", str(self.client_cpu)]
        return args

    def _syncd(
        self,
        emu: EmulatorProcess,
        profile: Profile,
        db: Path,
        kind: str,
        concurrency: int,
        boxed: bool,
        extra: tuple[str, ...] = (),
        variant: str = "",
    ) -> dict[str, Any]:
        args = [*self._common(emu, db, boxed), "--kind", kind, "--concurrency", str(concurrency)]
        if profile.rate is not None and variant not in UNTOLD_VARIANTS:
            args += ["--rate-limit", str(profile.rate)]
            if profile.burst is not None:
                args += ["--rate-burst", str(profile.burst)]
        if profile.platform == "americommerce":
            args += ["--platform", "americommerce", "--call-window", str(profile.window)]
            args += ["--call-reserve", str(profile.other_calls)]
        before = emu.stats()
        outcome, process_wall = run_client(
            "benchmarks.syncd_client", [*args, *extra], CLIENT_TIMEOUT
        )
        row = run_figures(
            outcome,
            delta(before, emu.stats()),
            profile,
            variant=variant,
            process_wall_s=process_wall,
        )
        self.say(_line(row))
        return row

    def _baseline(
        self, emu: EmulatorProcess, profile: Profile, db: Path, boxed: bool, concurrency: int = 1
    ) -> dict[str, Any]:
        before = emu.stats()
        args = self._common(emu, db, boxed)
        module = "benchmarks.baseline"
        if concurrency > 1:
            module = "benchmarks.baseline_pooled"
            args += ["--concurrency", str(concurrency)]
        outcome, process_wall = run_client(module, args, CLIENT_TIMEOUT)
        row = run_figures(outcome, delta(before, emu.stats()), profile, process_wall_s=process_wall)
        self.say(_line(row))
        return row

    def _stages(self, emu: EmulatorProcess, profile: Profile, name: str) -> dict[str, Any]:
        """One more full run under pyinstrument (slower, so not one of the measured runs)."""
        text = self.results / f"profile-{name}.txt"
        row = self._syncd(
            emu,
            profile,
            self._fresh_db(f"{name}-profiled"),
            "full",
            self.plan.concurrency,
            False,
            ("--profile", str(text)),
        )
        return {
            "profile_text": text.name,
            "products": row["products"],
            "wall_s": row["wall_s"],
            "main_thread_cpu_s": row["main_thread_cpu_s"],
            "sqlite_thread_cpu_s": row["other_threads_cpu_s"],
            "main_thread_stages_s": row["stages"],
        }

    # -- files -----------------------------------------------------------------------------------

    def _fresh_db(self, name: str) -> Path:
        db = self.scratch / f"{name}.db"
        for path in self.scratch.glob(f"{name}.db*"):  # with -wal, -shm and the -locks folder
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        return db

    def _write(self, name: str, record: dict[str, Any]) -> Path:
        path = self.results / f"{name}.json"
        path.write_text(json.dumps(record, indent=2) + "\n")
        self.say(f"  -> {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        return path


def _profile_json(profile: Profile) -> dict[str, Any]:
    return {
        "name": profile.name,
        "platform": profile.platform,
        "rate": profile.rate,
        "burst": profile.burst,
        "call_limit": profile.call_limit,
        "other_calls": profile.other_calls,
        "share": profile.share,
        "window_s": profile.window,
        "latency_s": profile.latency,
        "cost": None if profile.cost is None else profile.cost.describe(),
        "description": profile.describe(),
    }


def _variants(profile: Profile) -> tuple[str, ...]:
    """The syncd runs of a case: on a rate-limited Adobe store, told the limit, not told (a first
    sync, on a fresh store), and not told again (the next full sync of that store)."""
    return RATE_VARIANTS if profile.rate is not None else ("",)


def _line(row: dict[str, Any]) -> str:
    share = row["allowed_share"]
    return (
        f"  {row['tool']:<8} {row['variant']:<11} {row['kind']:<11} c={row['concurrency']:<2} "
        f"{row['status']:<9} "
        f"{row['products']:>8} products {row['wall_s']:>8.2f} s {row['products_per_s'] or 0:>9.0f}/s "
        f"{row['served_requests']:>5} req {row['served_429']:>4} x429 "
        f"{'' if share is None else f'{share:.0%} of allowed '}"
        f"tokens {row['token_requests']} cpu/10k {row['cpu_s_per_10k'] or 0:.2f}s "
        f"rss {row['peak_rss_mb']:.0f} MB process {row['process_wall_s'] or 0:.2f} s" + _server(row)
    )


def _server(row: dict[str, Any]) -> str:
    """The PostgreSQL backends' CPU per page, for a run into PostgreSQL (else nothing)."""
    spent = row.get("server_cpu_s")
    if spent is None or not row["pages"]:
        return ""
    return f" server {spent:.2f} s ({spent / row['pages'] * 1000:.2f} ms/page)"


def echo(text: str) -> None:
    """Progress lines on stderr."""
    print(text, file=sys.stderr, flush=True)
