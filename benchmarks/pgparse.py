"""What the `payload jsonb` contract costs the PostgreSQL server a page: the emulator's own
products, 100 a page as a sync writes them, cast to `jsonb`, to `json` and left as text, and
inserted into a scratch table as `jsonb` and as `text`, each timed by the backend's CPU from
/proc.

    python -m benchmarks.pgparse [--pages 300] [--repeats 3]
        [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

Load-independent (CPU seconds of one backend, not wall time). The figures explain the part of a
page's server CPU (`benchmarks stores`, `benchmarks.pgserver`) that the schema contract fixes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg

from benchmarks.measure import process_cpu_seconds
from benchmarks.stores import DEFAULT_SERVER, scratch_database
from syncd.clock import SystemClock
from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig
from syncd.sources.adobe_commerce import to_record

PAGE = 100

# name -> statement over one page's payloads (a binary text[]), evaluated for every payload.
CASTS = {
    "text (no parse)": "SELECT count(*) FROM unnest(%b::text[]) p WHERE length(p) > 0",
    "json (validated)": "SELECT count(*) FROM unnest(%b::text[]) p WHERE p::json IS NOT NULL",
    "jsonb (parsed, keys sorted)": (
        "SELECT count(*) FROM unnest(%b::text[]) p WHERE p::jsonb IS NOT NULL"
    ),
}
JSONB = "jsonb (parsed, keys sorted)"
JSONB_ORDERED = "jsonb, keys already in its order"
INSERTS = {
    "insert as text, primary key": "text",
    "insert as jsonb, primary key": "jsonb",
}


def payload_pages(pages: int) -> list[list[str]]:
    """`pages` pages of payloads exactly as syncd stores them, from the emulator's catalog."""
    config = EmulatorConfig(adobe=AdobeConfig(products=pages * PAGE))
    emulator = Emulator(config, SystemClock())
    catalog = emulator.adobe.catalog
    payloads = [
        to_record(orjson.loads(catalog.render_bytes(slot))).payload for slot in catalog.alive
    ]
    return [payloads[i : i + PAGE] for i in range(0, len(payloads), PAGE)]


def in_jsonb_order(payload: str) -> str:
    """`payload` with every object's keys in the order jsonb keeps them (shorter keys first,
    then bytewise), so that its parser finds them sorted: what a payload written for jsonb, not
    for syncd's content hash (sorted keys), would cost."""

    def order(value: Any) -> Any:
        if isinstance(value, dict):
            keys = sorted(value, key=lambda key: (len(key.encode()), key.encode()))
            return {key: order(value[key]) for key in keys}
        if isinstance(value, list):
            return [order(item) for item in value]
        return value

    return orjson.dumps(order(orjson.loads(payload))).decode()


def backend_cpu(conn: psycopg.Connection[tuple[object, ...]]) -> float:
    """CPU seconds so far of the backend serving `conn`."""
    seconds = process_cpu_seconds(conn.info.backend_pid)
    if seconds is None:
        raise SystemExit("pgparse: the server's processes are not on this machine")
    return seconds


def ms_a_page(
    conn: psycopg.Connection[tuple[object, ...]], query: str, params: list[tuple[Any, ...]]
) -> float:
    """Milliseconds of server CPU `query` costs per page, run once with each page's `params`."""
    before = backend_cpu(conn)
    for page in params:
        conn.execute(query, page)
    return (backend_cpu(conn) - before) / len(params) * 1000


def measure(
    url: str, pages: list[list[str]], ordered: list[list[str]] | None = None
) -> dict[str, float]:
    """Milliseconds of server CPU a page for each cast and insert; `ordered` is `pages` in
    jsonb's key order (`in_jsonb_order`), made here when not given."""
    if ordered is None:
        ordered = [[in_jsonb_order(payload) for payload in page] for page in pages]
    with psycopg.connect(url, autocommit=True) as conn:
        spent = {name: ms_a_page(conn, q, [(page,) for page in pages]) for name, q in CASTS.items()}
        spent[JSONB_ORDERED] = ms_a_page(conn, CASTS[JSONB], [(page,) for page in ordered])
        for name, kind in INSERTS.items():
            conn.execute("DROP TABLE IF EXISTS pgparse")
            conn.execute(f"CREATE TABLE pgparse (n int PRIMARY KEY, payload {kind} NOT NULL)")
            insert = (
                f"INSERT INTO pgparse SELECT %s * {PAGE} + n, p::{kind} "
                "FROM unnest(%b::text[]) WITH ORDINALITY AS t(p, n)"
            )
            spent[name] = ms_a_page(conn, insert, list(enumerate(pages)))
    return spent


def main(argv: list[str] | None = None) -> int:
    """Print each cast's and insert's server CPU a page (median of the repeats, with range)."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.pgparse")
    p.add_argument("--pages", type=int, default=300)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--postgres", default=DEFAULT_SERVER)
    args = p.parse_args(argv)
    pages = payload_pages(args.pages)
    mean = statistics.fmean(len(x.encode()) for page in pages for x in page)
    print(
        f"{len(pages)} pages of {PAGE} payloads ({mean:.0f} bytes each), {datetime.now(UTC):%F %T}"
    )
    ordered = [[in_jsonb_order(payload) for payload in page] for page in pages]
    runs: list[dict[str, float]] = []
    for _ in range(args.repeats):
        with scratch_database(args.postgres) as url:
            runs.append(measure(url, pages, ordered))
    for name in runs[0]:
        values = sorted(run[name] for run in runs)
        print(
            f"  {name:30s} {statistics.median(values):5.2f} ms a page "
            f"({values[0]:.2f} to {values[-1]:.2f}, {len(values)} runs)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
