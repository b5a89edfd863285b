"""`python -m benchmarks run|report`: measure into JSON, then render docs/PERFORMANCE.md from it."""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import replace
from pathlib import Path

from benchmarks.plan import DEFAULT_SIZES, DEFAULT_SWEEP, PROFILES, Plan, quick
from benchmarks.runner import RESULTS, Runner, echo


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part.replace("_", "")) for part in text.split(",") if part)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the benchmark cases and write results/*.json")
    run.add_argument("--sizes", type=_ints, default=DEFAULT_SIZES, help="e.g. 10000,100000")
    run.add_argument(
        "--profiles",
        default=",".join(PROFILES),
        help=f"comma-separated, from {', '.join(PROFILES)}",
    )
    run.add_argument("--include-1m", action="store_true", help="add 1,000,000 products (no limit)")
    run.add_argument("--sweep", type=_ints, default=DEFAULT_SWEEP, help="concurrencies, '' = none")
    run.add_argument("--sweep-repeats", type=int, default=3, help="runs per sweep point")
    run.add_argument("--concurrency", type=int, default=8)
    run.add_argument("--page-size", type=int, default=100)
    run.add_argument("--time-box", type=float, default=120.0, help="seconds per rate-limited run")
    run.add_argument("--repeats", type=int, default=None, help="runs per client and case (3)")
    run.add_argument(
        "--quick",
        action="store_true",
        help="smoke-sized: 2,000 products, 10 s boxes, a 2 s AmeriCommerce window, one run each "
        "(explicit --sizes, --time-box, --repeats still win)",
    )
    run.add_argument(
        "--fleet",
        type=int,
        default=0,
        help="also run the many-stores case with this many sources in one process (e.g. 1000)",
    )
    run.add_argument("--no-pin", action="store_true", help="do not pin client and emulator CPUs")
    run.add_argument("--no-stages", action="store_true", help="skip the profiled stage run")
    run.add_argument("--results", type=Path, default=RESULTS)
    run.add_argument(
        "--feed-cost",
        type=int,
        default=0,
        metavar="REPEATS",
        help="also time full syncs with the change feed on and off, REPEATS each",
    )
    run.add_argument(
        "--clean",
        action="store_true",
        help="delete earlier results first (else cases are replaced)",
    )
    stores = commands.add_parser("stores", help="full syncs into SQLite vs PostgreSQL")
    stores.add_argument("--products", type=int, default=100_000)
    stores.add_argument("--repeats", type=int, default=3, help="runs per backend")
    stores.add_argument("--postgres", default=None, help="server URL (a database is made per run)")
    stores.add_argument("--no-pin", action="store_true", help="do not pin client and emulator CPUs")
    stores.add_argument(
        "--server-core",
        action="store_true",
        help="the PostgreSQL server alone on CPU 1, client and emulator on CPU 0 (root)",
    )
    takeover = commands.add_parser(
        "takeover", help="lease takeover time after kill -9 (PostgreSQL)"
    )
    takeover.add_argument("--kills", type=int, default=20)
    takeover.add_argument("--lease", type=float, default=2.0, help="replica.lease_seconds")
    takeover.add_argument("--poll", type=float, default=0.2, help="replica.poll_interval")
    takeover.add_argument("--replicas", type=int, default=3)
    takeover.add_argument("--postgres", default=None, help="server URL (a database is made)")
    fleet = commands.add_parser(
        "replicas", help="N syncd run replicas x many small sources on one PostgreSQL"
    )
    fleet.add_argument("--replicas", type=int, default=3)
    fleet.add_argument("--sources", type=int, default=300)
    fleet.add_argument("--products", type=int, default=1000, help="per source")
    fleet.add_argument("--interval", type=int, default=120, help="each source's schedule, seconds")
    fleet.add_argument(
        "--rounds", type=int, default=2, help="successful runs per source to wait for"
    )
    fleet.add_argument("--lease", type=float, default=10.0, help="replica.lease_seconds")
    fleet.add_argument("--poll", type=float, default=1.0, help="replica.poll_interval")
    fleet.add_argument("--slots", type=int, default=8, help="replica.max_concurrent_runs")
    fleet.add_argument("--deadline", type=float, default=330.0, help="give up after, seconds")
    fleet.add_argument("--logs", type=Path, default=None, help="keep the replicas' logs here")
    fleet.add_argument("--postgres", default=None, help="server URL (a database is made)")
    cpu_ab = commands.add_parser(
        "cpu-ab", help="products per CPU second against an earlier checkout, alternated pairs"
    )
    cpu_ab.add_argument("--before", type=Path, required=True, help="checkout with its own .venv")
    cpu_ab.add_argument("--pairs", type=int, default=7)
    cpu_ab.add_argument("--products", type=int, default=100_000)
    cpu_ab.add_argument("--results", type=Path, default=RESULTS)
    report = commands.add_parser("report", help="render docs/PERFORMANCE.md and the chart")
    report.add_argument("--results", type=Path, default=RESULTS)
    report.add_argument("--doc", type=Path, default=None, help="default: docs/PERFORMANCE.md")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    if args.command == "run":
        unknown = [p for p in args.profiles.split(",") if p and p not in PROFILES]
        if unknown:
            echo(f"unknown profile(s): {', '.join(unknown)}; known: {', '.join(PROFILES)}")
            return 2
        plan = Plan(
            profiles=tuple(PROFILES[p] for p in args.profiles.split(",") if p),
            include_1m=args.include_1m,
            concurrency=args.concurrency,
            page_size=args.page_size,
            sweep=args.sweep,
            sweep_repeats=args.sweep_repeats,
            pin=not args.no_pin,
            profile_stages=not args.no_stages,
            feed_repeats=args.feed_cost,
            fleet=args.fleet,
        )
        if args.quick:
            plan = quick(plan)
        given = {a.split("=")[0] for a in argv if a.startswith("--")}
        overrides: dict[str, object] = {}
        if "--sizes" in given or not args.quick:
            overrides["sizes"] = args.sizes
        if "--time-box" in given or not args.quick:
            overrides["time_box"] = args.time_box
        if "--sweep" in given:
            overrides["sweep"] = args.sweep
        if args.repeats is not None:
            overrides["repeats"] = args.repeats
        plan = replace(plan, **overrides)  # type: ignore[arg-type]
        command = shlex.join([".venv/bin/python", "-m", "benchmarks", *argv])
        if args.clean:
            for old in [*args.results.glob("*.json"), *args.results.glob("profile-*.txt")]:
                old.unlink()
        Runner(plan, args.results, echo).run(command)
        return 0
    if args.command == "stores":
        from benchmarks.stores import DEFAULT_SERVER
        from benchmarks.stores import main as stores_main

        command = shlex.join([".venv/bin/python", "-m", "benchmarks", *argv])
        server = args.postgres or DEFAULT_SERVER
        try:
            stores_main(
                args.products, args.repeats, server, not args.no_pin, command, echo,
                server_core=args.server_core,
            )  # fmt: skip
        except RuntimeError as exc:  # --server-core refused: not local, not permitted
            print(f"benchmarks stores: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.command == "takeover":
        from benchmarks.stores import DEFAULT_SERVER
        from benchmarks.takeover import main as takeover_main

        command = shlex.join([".venv/bin/python", "-m", "benchmarks", *argv])
        server = args.postgres or DEFAULT_SERVER
        takeover_main(server, args.kills, args.lease, args.poll, args.replicas, command, echo)
        return 0
    if args.command == "replicas":
        from benchmarks.replicas import Shape
        from benchmarks.replicas import main as replicas_main
        from benchmarks.stores import DEFAULT_SERVER

        shape = Shape(
            args.replicas, args.sources, args.products, args.interval, args.rounds,
            args.lease, args.poll, args.slots, args.deadline, args.logs,
        )  # fmt: skip
        command = shlex.join([".venv/bin/python", "-m", "benchmarks", *argv])
        replicas_main(args.postgres or DEFAULT_SERVER, shape, command, echo)
        return 0
    if args.command == "cpu-ab":
        from benchmarks.cpu_ab import compare
        from benchmarks.processes import HarnessError

        command = shlex.join([".venv/bin/python", "-m", "benchmarks", *argv])
        try:
            compare(args.before.resolve(), args.pairs, args.products, args.results, command, echo)
        except HarnessError as exc:
            echo(f"cpu-ab: {exc}")
            return 1
        return 0
    from benchmarks.report import write_report

    written = write_report(args.results, args.doc)
    for path in written:
        echo(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
