"""Full scans through a store that watches its page commits, on SQLite or PostgreSQL: what the
tests of a first scan's implicit marks and of unchanged pages share."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from structlog.testing import capture_logs

from syncd.config import StoreSettings
from syncd.emulator import Emulator
from syncd.runtime import Runtime
from syncd.store import PageCommit, ProductRecord
from syncd.sync import SyncEngine, SyncResult
from tests.support import InterceptedStore, adobe_source, settings_for

PAGE = 10


@dataclass(frozen=True)
class Backend:
    """One store under test, and raw reads of its tables behind the protocol."""

    name: str
    store: StoreSettings

    @classmethod
    def sqlite(cls, path: Path) -> Backend:
        return cls("sqlite", StoreSettings(path=path))

    @classmethod
    def postgres(cls, url: str) -> Backend:
        return cls("postgres", StoreSettings(url=url))

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """The rows of a read (`?` placeholders)."""
        if self.store.url is None:
            with sqlite3.connect(self.store.path) as conn:
                return conn.execute(sql, params).fetchall()
        with psycopg.connect(self.store.url) as conn:
            return conn.execute(sql.replace("?", "%s"), params).fetchall()

    def count(self, table: str) -> int:
        """Rows in `table`."""
        return int(self.rows(f"SELECT count(*) FROM {table}")[0][0])

    def marked(self, skus: Sequence[str]) -> int:
        """How many of `skus` have a scan mark (of any scan)."""
        marks = ", ".join("?" * len(skus))
        found = self.rows(
            f"SELECT count(DISTINCT sku) FROM full_scan_seen WHERE sku IN ({marks})", *skus
        )
        return int(found[0][0])

    def live_products(self) -> dict[str, Any]:
        """sku -> payload of every live product (every test here has one source)."""
        rows = self.rows("SELECT sku, CAST(payload AS text) FROM products WHERE deleted_at IS NULL")
        return {sku: json.loads(payload) for sku, payload in rows}


class WatchedStore(InterceptedStore):
    """The runtime's store, with the records sent and the mark rows counted at every page
    commit; the commit numbered `fail_at` fails before it reaches the database."""

    def __init__(self, inner: Any, backend: Backend, fail_at: int | None = None) -> None:
        super().__init__(inner, fail_at)
        self._backend = backend
        self.marks_after: list[int] = []
        self.sent: list[tuple[int, int]] = []  # (records, unchanged skus) of each commit
        self.arrived: list[int | None] = []  # the products each commit counts as arrived
        self.checkpoints: list[dict[str, Any]] = []
        # Of each commit that forgot marks (a dispute): the marks before it (nothing else is in
        # flight then: the engine drains first), and after it how many of its own skus and of
        # the forgotten ones have a mark. Commits in flight together make totals no measure.
        self.disputes: list[tuple[int, int, int]] = []
        self.commits_forgetting: list[int] = []  # indexes (into `sent`) of those commits
        self._marks_before = 0

    async def before_write(self, records: Sequence[ProductRecord], commit: PageCommit) -> None:
        self.sent.append((len(records), len(commit.seen)))
        self.arrived.append(commit.run.arrived if commit.run else None)
        if commit.forget:  # alone in flight when it starts; later pages may start meanwhile
            self._marks_before = self._backend.count("full_scan_seen")
            self.commits_forgetting.append(len(self.sent) - 1)

    async def after_write(
        self, source: str, records: Sequence[ProductRecord], commit: PageCommit
    ) -> None:
        if commit.forget:
            own = [r.sku for r in records]
            marked = (self._backend.marked(own), self._backend.marked(commit.forget))
            self.disputes.append((self._marks_before, *marked))
        self.marks_after.append(self._backend.count("full_scan_seen"))
        if commit.checkpoint:
            self.checkpoints.append(json.loads(commit.checkpoint))


async def full_run(
    backend: Backend, emu: Emulator, fail_at: int | None = None
) -> tuple[SyncResult, WatchedStore, list[dict[str, Any]]]:
    """One full run of the emulator's catalog (source `shop`, `PAGE` products a page) through a
    `WatchedStore`, with its log events."""
    settings = settings_for(Path("unused.db"), adobe_source(emu, page_size=PAGE, max_concurrency=4))
    settings = settings.model_copy(update={"store": backend.store})
    with capture_logs() as logs:
        async with Runtime(settings) as runtime:
            store = WatchedStore(runtime.store, backend, fail_at)
            result = await SyncEngine(store, runtime.clock).run(runtime.sources["shop"], "full")
    return result, store, [dict(e) for e in logs]
