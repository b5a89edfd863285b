"""Builders shared by integration tests: settings pointing at a running emulator, DB readers."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from syncd.config import (
    AdobeCommerceSourceSettings,
    AmeriCommerceAuthSettings,
    AmeriCommerceSourceSettings,
    HttpSettings,
    ImsAuthSettings,
    Settings,
    StoreSettings,
)
from syncd.emulator import Emulator
from syncd.errors import StoreError
from syncd.store import PageCommit, ProductRecord, UpsertCounts


def adobe_source(
    emu: Emulator, name: str = "shop", **overrides: Any
) -> AdobeCommerceSourceSettings:
    """An Adobe Commerce source aimed at `emu` with the emulator's credentials."""
    adobe = emu.adobe.config
    fields: dict[str, Any] = {
        "name": name,
        "kind": "adobe_commerce",
        "base_url": emu.url,
        "page_size": 10,
        "max_concurrency": 4,
        "auth": ImsAuthSettings(
            token_url=emu.ims_token_url,  # type: ignore[arg-type]
            client_id=adobe.client_id,
            client_secret=adobe.client_secret,  # type: ignore[arg-type]
            org_id=adobe.org_id,
        ),
    }
    fields.update(overrides)
    return AdobeCommerceSourceSettings(**fields)


def ac_source(emu: Emulator, name: str = "shop", **overrides: Any) -> AmeriCommerceSourceSettings:
    """An AmeriCommerce source aimed at `emu` with the store's first admin-console token."""
    tokens = emu.americommerce.config.static_tokens
    if not tokens:
        raise ValueError("configure the emulator with AmeriCommerceConfig(static_tokens=(...,))")
    fields: dict[str, Any] = {
        "name": name,
        "kind": "americommerce",
        "base_url": emu.url,
        "page_size": 10,
        "max_concurrency": 4,
        "auth": AmeriCommerceAuthSettings(static_token=tokens[0]),  # type: ignore[arg-type]
    }
    fields.update(overrides)
    return AmeriCommerceSourceSettings(**fields)


def settings_for(
    db: Path,
    *sources: AdobeCommerceSourceSettings | AmeriCommerceSourceSettings,
    **overrides: Any,
) -> Settings:
    """Settings with fast retries, for tests."""
    http = overrides.pop("http", HttpSettings(max_attempts=3, backoff_base=0.001, backoff_cap=0.01))
    return Settings(store=StoreSettings(path=db), sources=sources, http=http, **overrides)


def stored_products(db: Path, source: str, *, live: bool = True) -> dict[str, dict[str, Any]]:
    """sku -> payload of the products stored for `source` (only non-tombstoned if `live`)."""
    where = " AND deleted_at IS NULL" if live else ""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            f"SELECT sku, payload FROM products WHERE source = ?{where}", (source,)
        ).fetchall()
    return {sku: json.loads(payload) for sku, payload in rows}


def query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run a read query on the database file."""
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


async def until(predicate: Callable[[], bool], limit: float = 10.0) -> None:
    """Wait (bounded) until `predicate()` holds; the emulator exposes counters, not events."""
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110 - polling a counter owned by another task
            await asyncio.sleep(0.001)


class InterceptedStore:
    """A store whose page commits are counted and watched (`before_write`, `after_write`), the
    one numbered `fail_at` failing before it reaches the database; the rest goes to `inner`."""

    def __init__(self, inner: Any, fail_at: int | None = None) -> None:
        self._inner = inner
        self._fail_at = fail_at
        self.commits = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def before_write(self, records: Sequence[ProductRecord], commit: PageCommit) -> None:
        """Called for every commit, the failing one too, before it is written."""

    async def after_write(
        self, source: str, records: Sequence[ProductRecord], commit: PageCommit
    ) -> None:
        """Called once a commit has been written."""

    async def commit_page(
        self, source: str, records: Sequence[ProductRecord], now: datetime, commit: PageCommit
    ) -> UpsertCounts:
        self.commits += 1
        number = self.commits
        await self.before_write(records, commit)
        if number == self._fail_at:
            raise StoreError("injected: this page's commit failed")
        counts: UpsertCounts = await self._inner.commit_page(source, records, now, commit)
        await self.after_write(source, records, commit)
        return counts
