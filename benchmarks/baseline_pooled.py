"""The second baseline: the integration guide's advice followed, written as a user would.

    python -m benchmarks.baseline_pooled --url URL --token-url URL --db PATH [--page-size 100]
        [--concurrency 8] [--time-box S] [--cpu 0]

`adobe-commerce-s2s-integration.md` recommends pooling connections and running requests
concurrently. So: the same `TokenManager` and `AccsApiClient` as `benchmarks.baseline` (token
cached until `expires_in`, sleep `Retry-After` on 429 and retry), on one aiohttp session whose
connector holds `concurrency` connections; page 1 first (it tells `total_count`), then every
other page by `concurrency` workers at once; each page's products written with one
`executemany` of `INSERT OR REPLACE` through `sqlite3`, committed per page. No rate limiting of
its own: the guide has none.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sqlite3
import time
from typing import Any

import aiohttp

from benchmarks.baseline import AccsApiClient, TokenManager, open_db, outcome, parser
from benchmarks.measure import Meter, pin_to_cpu
from benchmarks.outcome import ClientOutcome
from syncd.emulator import AdobeConfig

INSERT = (
    "INSERT OR REPLACE INTO products (sku, id, name, price, status, type_id, updated_at, "
    "payload) VALUES (?,?,?,?,?,?,?,?)"
)


def store_page(db: sqlite3.Connection, items: list[dict[str, Any]]) -> None:
    """One page, one executemany, one commit."""
    db.executemany(
        INSERT,
        [
            (
                item.get("sku"),
                item.get("id"),
                item.get("name"),
                item.get("price"),
                item.get("status"),
                item.get("type_id"),
                item.get("updated_at"),
                json.dumps(item),
            )
            for item in items
        ],
    )
    db.commit()


def _params(page: int, page_size: int) -> dict[str, str]:
    return {
        "searchCriteria[pageSize]": str(page_size),
        "searchCriteria[currentPage]": str(page),
        "searchCriteria[sortOrders][0][field]": "entity_id",
        "searchCriteria[sortOrders][0][direction]": "ASC",
    }


async def sync_catalog(
    client: AccsApiClient,
    db: sqlite3.Connection,
    page_size: int,
    concurrency: int,
    deadline: float | None,
) -> tuple[int, int, bool]:
    """Page 1, then the rest `concurrency` at a time; returns (products, pages, boxed)."""
    first = await client.request("GET", "/rest/V1/products", _params(1, page_size))
    store_page(db, first["items"])
    products, pages = len(first["items"]), 1
    last = math.ceil(int(first["total_count"]) / page_size)
    todo = iter(range(2, last + 1))
    boxed = False

    async def worker() -> None:
        nonlocal products, pages, boxed
        for page in todo:
            if deadline is not None and time.monotonic() >= deadline:
                boxed = True
                return
            data = await client.request("GET", "/rest/V1/products", _params(page, page_size))
            store_page(db, data["items"])
            products += len(data["items"])
            pages += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return products, pages, boxed


async def run(args: argparse.Namespace) -> ClientOutcome:
    """One full read of the catalog, measured from the first request to the last commit."""
    creds = AdobeConfig()
    db = open_db(args.db)
    try:
        connector = aiohttp.TCPConnector(limit=args.concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            tokens = TokenManager(session, args.token_url, creds.client_id, creds.client_secret)
            client = AccsApiClient(session, args.url, tokens, creds)
            meter = Meter()
            deadline = None if args.time_box is None else time.monotonic() + args.time_box
            products, pages, boxed = await sync_catalog(
                client, db, args.page_size, args.concurrency, deadline
            )
            usage = meter.stop()
        (stored,) = db.execute("SELECT count(*) FROM products").fetchone()
    finally:
        db.close()
    return outcome(args.concurrency, usage, products, pages, client, int(stored), boxed)


def main(argv: list[str] | None = None) -> None:
    """Parse, pin, run, print the outcome."""
    p = parser("python -m benchmarks.baseline_pooled")
    p.add_argument("--concurrency", type=int, default=8)
    args = p.parse_args(argv)
    pin_to_cpu(args.cpu)
    print(asyncio.run(run(args)).to_json(), flush=True)


if __name__ == "__main__":
    main()
