"""The PostgreSQL server's CPU per page: a first full sync into an empty database, then a second
(unchanged catalog) into the same one, each in a fresh syncd process.

    python -m benchmarks.pgserver [--products 100000] [--repeats 1] [--no-changes]
        [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

The figure is the CPU seconds of the database's backends (from /proc, read by the client before
and after the run: `syncd_client.server_cpu`) over the run's pages: load-independent, unlike
products/s on a shared machine. The WAL writer, checkpointer and autovacuum are not counted.
"""

from __future__ import annotations

import argparse
import sys

from benchmarks.plan import PROFILES, Plan
from benchmarks.runner import Runner, echo
from benchmarks.stores import DEFAULT_SERVER, scratch_database


def main(argv: list[str] | None = None) -> int:
    """Run the pairs of syncs and print each run's line (server ms/page at its end)."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.pgserver")
    p.add_argument("--products", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--no-changes", action="store_true", help="the change feed off")
    p.add_argument("--postgres", default=DEFAULT_SERVER)
    args = p.parse_args(argv)
    runner = Runner(Plan(), say=echo)
    profile = PROFILES["nolimit"]
    extra = ("--no-changes",) if args.no_changes else ()
    runner.scratch.mkdir(parents=True, exist_ok=True)
    with runner._emulator(profile, args.products) as emu:
        for repeat in range(args.repeats):
            db = runner._fresh_db(f"pgserver-{repeat}")
            with scratch_database(args.postgres) as url:
                for _ in ("first", "second"):
                    runner._syncd(
                        emu, profile, db, "full", runner.plan.concurrency, False,
                        ("--store-url", url, *extra),
                    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
