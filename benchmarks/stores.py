"""SQLite against PostgreSQL: full syncs of one catalog into each backend, alternated, same run.

    python -m benchmarks stores [--products 100000] [--repeats 3] [--no-pin | --server-core]
        [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

One emulator process (no rate limit) serves every run; each run is a fresh syncd process into a
fresh database: a new SQLite file, or a PostgreSQL database created for it and dropped after.
The runs alternate (SQLite, PostgreSQL, PostgreSQL without the change feed, SQLite, ...; the two
PostgreSQL modes swap places every repeat) so that drift of the machine's load hits all alike;
the third is what the feed costs on PostgreSQL (`[changes] enabled = false`). Each database gets
a second full sync of the same, unchanged catalog right after its first: what a scheduled full
run costs from then on. Writes `results/stores-nolimit-<size>[-nopin|-servercore].json`; the
medians are quoted in docs/SCALING.md.

Where the work runs, on a machine of two CPUs: by default the client on CPU 0, the emulator (the
remote store) on CPU 1, the PostgreSQL server wherever the kernel puts it (mostly beside the
client that wakes it); `--no-pin` pins nothing; `--server-core` gives the database server CPU 1
to itself, client and emulator sharing CPU 0, as a deployment whose database has a host of its
own would. That needs the server on this machine and the right to set its processes' CPU
affinity (root); the affinity is put back when the command ends.
"""

from __future__ import annotations

import os
import secrets
import shutil
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from benchmarks.environment import load, machine
from benchmarks.measure import child_pids, parent_pid
from benchmarks.plan import PROFILES, Plan, size_label
from benchmarks.processes import ROOT
from benchmarks.runner import Runner, Say

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
STORES = ("sqlite", "postgres", "postgres-nofeed")
SYNCS = ("first", "second")  # into a fresh database, then again into it (the catalog unchanged)


@contextmanager
def scratch_database(server: str) -> Iterator[str]:
    """A database created on `server` for one run, dropped after it; yields its URL."""
    name = f"syncd_bench_{secrets.token_hex(4)}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
        finally:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def server_on(server: str, cpu: int) -> Iterator[None]:
    """The PostgreSQL server of `server` (on this machine) confined to `cpu`, its postmaster and
    every process of it, and so every backend it starts meanwhile; their affinity put back after."""
    with psycopg.connect(server) as conn:  # its backend's parent, read while it lives
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        postmaster = parent_pid(int(row[0])) if row else None
    if postmaster is None:
        raise RuntimeError("--server-core needs the PostgreSQL server on this machine")
    every = os.sched_getaffinity(postmaster)

    def confine(cpus: set[int], strict: bool) -> None:
        for pid in [postmaster, *child_pids(postmaster)]:
            try:
                os.sched_setaffinity(pid, cpus)
            except ProcessLookupError:
                continue  # a backend that ended meanwhile
            except PermissionError as exc:
                if strict:
                    raise RuntimeError(
                        f"--server-core cannot move the server's processes: {exc}"
                    ) from None

    try:
        confine({cpu}, strict=True)
        yield
    finally:
        confine(every, strict=False)  # every process it could move, back


def postgres_version(server: str) -> str:
    """The server's version line, for the record."""
    with psycopg.connect(server) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def compare(
    runner: Runner,
    size: int,
    repeats: int,
    server: str,
    command: str,
    say: Say,
    server_cpu: int | None = None,
) -> Path:
    """Run the comparison and write its JSON record (`server_cpu`: where the server was held)."""
    profile = PROFILES["nolimit"]
    if server_cpu is not None:
        placement = "-servercore"
    else:
        placement = "" if runner.client_cpu is not None else "-nopin"
    name = f"stores-{profile.name}-{size_label(size)}{placement}"
    say(f"{name}: two full syncs into SQLite and PostgreSQL, alternated, {repeats} each")
    record: dict[str, Any] = {
        "case": name,
        "kind": "stores",
        "products": size,
        "page_size": runner.plan.page_size,
        "concurrency": runner.plan.concurrency,
        "command": command,
        "machine": machine(ROOT),
        "postgres": postgres_version(server),
        "load_before": load(),
        "client_cpu": runner.client_cpu,
        "emulator_cpu": runner.emulator_cpu,
        "server_cpu": server_cpu,
        "runs": [],
    }
    runner.results.mkdir(parents=True, exist_ok=True)
    runner.scratch.mkdir(parents=True, exist_ok=True)
    concurrency = runner.plan.concurrency
    with runner._emulator(profile, size) as emu:
        for repeat in range(repeats):
            db = runner._fresh_db(f"{name}-{repeat}")
            for sync in SYNCS:
                row = runner._syncd(emu, profile, db, "full", concurrency, False)
                record["runs"].append({"store": "sqlite", "sync": sync, **row})
            modes = [("postgres", ()), ("postgres-nofeed", ("--no-changes",))]
            for store, extra in modes[repeat % 2 :] + modes[: repeat % 2]:  # rotate: no order bias
                with scratch_database(server) as url:
                    for sync in SYNCS:
                        row = runner._syncd(
                            emu, profile, db, "full", concurrency, False,
                            ("--store-url", url, *extra),
                        )  # fmt: skip
                        record["runs"].append({"store": store, "sync": sync, **row})
    shutil.rmtree(runner.scratch, ignore_errors=True)
    record["load_after"] = load()
    record["median_products_per_s"] = medians(record["runs"], "first")
    record["median_second_products_per_s"] = medians(record["runs"], "second")
    say(f"  median products/s, first sync: {record['median_products_per_s']}")
    say(f"  median products/s, second sync: {record['median_second_products_per_s']}")
    return runner._write(name, record)


def medians(runs: list[dict[str, Any]], sync: str) -> dict[str, float]:
    """Each store's median products/s over its `sync` runs (a record without `sync`: first)."""
    return {
        store: statistics.median(
            r["products_per_s"]
            for r in runs
            if r["store"] == store and r.get("sync", "first") == sync
        )
        for store in STORES
    }


def main(
    products: int,
    repeats: int,
    server: str,
    pin: bool,
    command: str,
    say: Say,
    server_core: bool = False,
) -> Path:
    """Entry point of `python -m benchmarks stores`."""
    runner = Runner(Plan(pin=pin), say=say)
    if not server_core:
        return compare(runner, products, repeats, server, command, say)
    if runner.client_cpu is None or runner.emulator_cpu is None:
        raise RuntimeError("--server-core needs two CPUs and pinning")
    server_cpu = runner.emulator_cpu
    runner.emulator_cpu = runner.client_cpu
    with server_on(server, server_cpu):
        return compare(runner, products, repeats, server, command, say, server_cpu)
