"""The baseline: the client `adobe-commerce-s2s-integration.md` describes, ported faithfully.

    python -m benchmarks.baseline --url URL --token-url URL --db PATH [--page-size 100]
        [--time-box S] [--cpu 0]

What the reference document prescribes, and nothing it does not: one `TokenManager` that caches the
IMS token until `expires_in` runs out (`tokenManager.js`), one `ACCSApiClient` whose `request()`
gets a valid token, sends the three gateway headers, and on a 429 sleeps `Retry-After` seconds
(5 when absent) and tries again (`accsClient.js`); a 5xx or a network error raises, a 401 drops
the token and raises. One aiohttp session stands for the document's "connection pooling".

The paging loop is what a reader of the document writes next: `currentPage` 1, 2, 3... one
request after the other until `total_count` is reached, each product written with its own
`INSERT OR REPLACE` through the standard `sqlite3` module, committed once per page. Two choices
favour the baseline and are deliberate: it sorts by `entity_id` (without an order Magento pages
repeat and skip products, and the comparison would not be of the same catalog), and it commits
per page rather than per row. The document's scope list lacks `commerce.accs`, which ACCS
requires, so it is added.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.measure import Meter, Usage, peak_rss_mb, pin_to_cpu
from benchmarks.outcome import ClientOutcome
from syncd.emulator import AdobeConfig

SCOPES = (
    "openid,AdobeID,email,profile,additional_info.roles,"
    "additional_info.projectedProductContext,commerce.accs"
)


class TokenManager:
    """tokenManager.js: one cached token, valid until its expiry, regenerated when it is not."""

    def __init__(
        self, session: aiohttp.ClientSession, token_url: str, client_id: str, client_secret: str
    ) -> None:
        self._session = session
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self.token: str | None = None
        self.token_expiry: float | None = None

    async def get_valid_token(self) -> str:
        """The cached token if still valid, else a new one."""
        if self.is_token_valid() and self.token is not None:
            return self.token
        return await self.generate_token()

    def is_token_valid(self) -> bool:
        """`this.token && this.tokenExpiry && Date.now() < this.tokenExpiry`."""
        return bool(self.token and self.token_expiry and time.time() < self.token_expiry)

    async def generate_token(self) -> str:
        """POST the client_credentials grant to IMS."""
        form = {
            "client_id": self._client_id,
            "client_secret": self._client_secret,
            "grant_type": "client_credentials",
            "scope": SCOPES,
        }
        async with self._session.post(self._token_url, data=form) as response:
            response.raise_for_status()
            data = await response.json()
        self.token = str(data["access_token"])
        self.token_expiry = time.time() + float(data["expires_in"])
        return self.token


class AccsApiClient:
    """accsClient.js: token, gateway headers, sleep on 429 and retry; 401 forgets the token."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        tokens: TokenManager,
        creds: AdobeConfig,
    ) -> None:
        self._session = session
        self._base_url = base_url
        self.token_manager = tokens
        self._client_id = creds.client_id
        self._org_id = creds.org_id
        self.requests = 0
        self.rate_limited = 0

    async def request(self, method: str, endpoint: str, params: dict[str, str]) -> Any:
        """Send; on 429 sleep `Retry-After` (or 5) seconds and send again, as often as it takes."""
        # The document recurses on 429; a loop behaves the same without a recursion limit.
        while True:
            access_token = await self.token_manager.get_valid_token()
            headers = {
                "Authorization": f"Bearer {access_token}",
                "x-api-key": self._client_id,
                "x-gw-ims-org-id": self._org_id,
                "Content-Type": "application/json",
            }
            self.requests += 1
            async with self._session.request(
                method, f"{self._base_url}{endpoint}", params=params, headers=headers
            ) as response:
                # axios' `validateStatus: status => status < 500`: only 5xx throws.
                if response.status >= 500:
                    response.raise_for_status()
                if response.status == 401:
                    self.token_manager.token = None
                    response.raise_for_status()
                if response.status == 429:
                    self.rate_limited += 1
                    retry_after = float(response.headers.get("retry-after") or 5)
                    await asyncio.sleep(retry_after)
                    continue
                return await response.json()


def open_db(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 table, as a script would create it."""
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE IF NOT EXISTS products (sku TEXT PRIMARY KEY, id INTEGER, name TEXT, "
        "price REAL, status INTEGER, type_id TEXT, updated_at TEXT, payload TEXT)"
    )
    return db


def store(db: sqlite3.Connection, item: dict[str, Any]) -> None:
    """One product, one write."""
    db.execute(
        "INSERT OR REPLACE INTO products (sku, id, name, price, status, type_id, updated_at, "
        "payload) VALUES (?,?,?,?,?,?,?,?)",
        (
            item.get("sku"),
            item.get("id"),
            item.get("name"),
            item.get("price"),
            item.get("status"),
            item.get("type_id"),
            item.get("updated_at"),
            json.dumps(item),
        ),
    )


async def sync_catalog(
    client: AccsApiClient, db: sqlite3.Connection, page_size: int, deadline: float | None
) -> tuple[int, int, bool]:
    """Page through `/rest/V1/products`; returns (products, pages, stopped by the deadline)."""
    products = pages = 0
    page = 1
    while True:
        if deadline is not None and time.monotonic() >= deadline:
            return products, pages, True
        data = await client.request(
            "GET",
            "/rest/V1/products",
            {
                "searchCriteria[pageSize]": str(page_size),
                "searchCriteria[currentPage]": str(page),
                "searchCriteria[sortOrders][0][field]": "entity_id",
                "searchCriteria[sortOrders][0][direction]": "ASC",
            },
        )
        items = data["items"]
        for item in items:
            store(db, item)
        db.commit()
        products += len(items)
        pages += 1
        if not items or page * page_size >= int(data["total_count"]):
            return products, pages, False
        page += 1


async def run(args: argparse.Namespace) -> ClientOutcome:
    """One full read of the catalog, measured like syncd's: from the first request (the token's)
    to the last commit."""
    creds = AdobeConfig()
    db = open_db(args.db)
    try:
        async with aiohttp.ClientSession() as session:
            tokens = TokenManager(session, args.token_url, creds.client_id, creds.client_secret)
            client = AccsApiClient(session, args.url, tokens, creds)
            meter = Meter()
            deadline = None if args.time_box is None else time.monotonic() + args.time_box
            products, pages, boxed = await sync_catalog(client, db, args.page_size, deadline)
            usage = meter.stop()
        (stored,) = db.execute("SELECT count(*) FROM products").fetchone()
    finally:
        db.close()
    return outcome(1, usage, products, pages, client, int(stored), boxed)


def outcome(
    concurrency: int,
    usage: Usage,
    products: int,
    pages: int,
    client: AccsApiClient,
    stored: int,
    boxed: bool,
) -> ClientOutcome:
    """What a baseline run prints: its figures in the harness's shape."""
    return ClientOutcome(
        tool="baseline",
        kind="full",
        status="cancelled" if boxed else "succeeded",
        concurrency=concurrency,
        wall_s=round(usage.wall_s, 4),
        cpu_s=round(usage.cpu_s, 4),
        peak_rss_mb=round(peak_rss_mb(), 1),
        products=products,
        pages=pages,
        requests=client.requests,
        rate_limited=client.rate_limited,
        stored=stored,
        main_thread_cpu_s=round(usage.cpu_s, 4),
        time_boxed=boxed,
    )


def parser(prog: str) -> argparse.ArgumentParser:
    """The options both baselines take (the emulator's URLs, the database, paging, pinning)."""
    p = argparse.ArgumentParser(prog=prog)
    p.add_argument("--url", required=True)
    p.add_argument("--token-url", required=True)
    p.add_argument("--db", type=Path, required=True)
    p.add_argument("--page-size", type=int, default=100)
    p.add_argument("--time-box", type=float, default=None)
    p.add_argument("--cpu", type=int, default=None)
    return p


def main(argv: list[str] | None = None) -> None:
    """Parse, pin, run, print the outcome."""
    args = parser("python -m benchmarks.baseline").parse_args(argv)
    pin_to_cpu(args.cpu)
    print(asyncio.run(run(args)).to_json(), flush=True)


if __name__ == "__main__":
    main()
