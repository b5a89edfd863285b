"""The change feed replayed from seq 0 rebuilds the products table exactly, across real `syncd`
processes: a SIGKILL mid-scan, a resume, updates, deletes, inserts and a delete then re-insert."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from syncd.config.settings import StoreSettings
from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig
from syncd.runtime import Runtime
from syncd.store.base import RunKind
from tests.support import adobe_source, query, settings_for, until
from tests.test_process import start_syncd, write_config

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    """300 products served slowly (10 ms a request) so that a run can be killed mid-scan."""
    async with Emulator(
        EmulatorConfig(adobe=AdobeConfig(products=300, latency=0.01), seed=11)
    ) as emulator:
        yield emulator


class Database:
    """The store a test's syncd processes write: the SQLite file, or a PostgreSQL database."""

    def __init__(self, path: Path, url: str | None) -> None:
        self.path, self.url = path, url

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        if self.url is None:
            return query(self.path, sql)
        with psycopg.connect(self.url) as conn:
            return conn.execute(sql).fetchall()

    def stored_count(self) -> int:
        try:
            return int(self.query("SELECT count(*) FROM products")[0][0])
        except (psycopg.Error, sqlite3.Error):  # the schema may not exist yet
            return 0


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    return Database(tmp_path / "syncd.db", url)


async def syncd(config: Path, *args: str) -> tuple[int, str, str]:
    proc = await start_syncd(config, *args)
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def sync(emu: Emulator, db: Database, kind: RunKind | None = None) -> str:
    """One run in this process (only the killed one needs a process of its own)."""
    settings = settings_for(db.path, adobe_source(emu, page_size=10, max_concurrency=4))
    if db.url is not None:
        settings = settings.model_copy(update={"store": StoreSettings(url=db.url)})
    async with Runtime(settings) as runtime:
        result = await runtime.sync("shop", kind)
    assert result.ok, result.error
    return result.kind


def table(db: Database) -> dict[str, tuple[str, bool]]:
    """sku -> (content hash, tombstoned) of every row of `products`, live or not."""
    rows = db.query("SELECT sku, content_hash, deleted_at IS NOT NULL FROM products")
    return {sku: (content_hash, bool(deleted)) for sku, content_hash, deleted in rows}


def replay(lines: list[dict[str, Any]]) -> dict[str, tuple[str, bool]]:
    rebuilt: dict[str, tuple[str, bool]] = {}
    for entry in lines:
        rebuilt[entry["sku"]] = (entry["content_hash"], entry["op"] == "deleted")
    return rebuilt


async def test_feed_replayed_from_zero_rebuilds_products_after_a_sigkill(
    tmp_path: Path, emu: Emulator, database: Database
) -> None:
    config = write_config(tmp_path, emu)
    if database.url is not None:
        config.write_text(
            config.read_text().replace("[store]\n", f'[store]\nurl = "{database.url}"\n')
        )
    db = database
    catalog = emu.adobe.catalog
    skus = sorted(catalog.skus())

    # Run 1: killed mid-scan; the pages it committed keep their entries, nothing half-written.
    proc = await start_syncd(config, "sync", "shop")
    await until(lambda: db.stored_count() >= 100, limit=30)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    if db.url is not None:
        # The dead process's lease would run out lease_seconds later: let it have run out now.
        with psycopg.connect(db.url) as conn:
            conn.execute("UPDATE leases SET expires_at = clock_timestamp() - interval '1 second'")
    assert db.query("SELECT status FROM sync_runs") == [("running",)]
    assert db.query("SELECT count(*) FROM product_changes") == db.query(
        "SELECT count(*) FROM products"
    )

    # Run 2 resumes the scan over a catalog that changed meanwhile (some of it already stored).
    stored = sorted(row[0] for row in db.query("SELECT sku FROM products"))
    gone = stored[5:8]
    for sku in stored[:5]:
        catalog.update(sku, price=1.25)
    for sku in gone:
        catalog.delete(sku)
    rest = [sku for sku in skus if sku not in gone]
    for n in range(4):
        catalog.insert(price=float(n))
    await sync(emu, db)

    # Run 3 (incremental): updates and inserts.
    for sku in rest[10:13]:
        catalog.update(sku, name="renamed")
    catalog.insert(price=9.0)
    catalog.insert(price=9.5)
    assert await sync(emu, db) == "incremental"

    # Run 4 (full): deletes, one of which comes back in run 5 with other content.
    back, deleted = rest[20], rest[21]
    catalog.delete(back)
    catalog.delete(deleted)
    await sync(emu, db, "full")
    catalog.insert(sku=back, price=77.0)
    catalog.update(rest[30], price=3.5)
    await sync(emu, db, "full")

    code, out, err = await syncd(config, "changes", "--since", "0", "--json")
    assert code == 0, err[-2000:]
    lines = [json.loads(line) for line in out.splitlines()]
    assert [e["seq"] for e in lines] == list(range(1, len(lines) + 1))  # no gap, no duplicate
    assert {e["op"] for e in lines} == {"created", "updated", "deleted", "revived"}
    assert {e["run_id"] for e in lines} >= {1, 2, 3, 4, 5}  # the killed run's pages included
    assert set(lines[0]) == {
        "source",
        "seq",
        "sku",
        "op",
        "run_id",
        "at",
        "content_hash",
        "payload",
    }
    assert replay(lines) == table(db)
    tombstoned = {sku for sku, (_, deleted) in table(db).items() if deleted}
    assert tombstoned == {*gone, deleted}
    assert [e["op"] for e in lines if e["sku"] == back][-2:] == ["deleted", "revived"]
    live = {sku for sku, (_, deleted) in table(db).items() if not deleted}
    assert live == set(catalog.skus())

    # A consumer that starts from an export and goes on with `changes --since` ends up the same.
    code, out, err = await syncd(config, "export", "shop", "--format", "jsonl")
    assert code == 0, err[-2000:]
    exported = {json.loads(line)["sku"] for line in out.splitlines()}
    assert exported == live
    assert f"--since {len(lines)}" in err
