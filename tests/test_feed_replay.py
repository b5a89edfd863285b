"""The change feed replayed from seq 0 rebuilds the products table exactly, across real `syncd`
processes: a SIGKILL mid-scan, a resume, updates, deletes, inserts and a delete then re-insert."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from syncd.daemon import Runtime
from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig
from syncd.store.base import RunKind
from tests.support import adobe_source, query, settings_for, until
from tests.test_process import start_syncd, stored_count, write_config

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    """300 products served slowly (10 ms a request) so that a run can be killed mid-scan."""
    async with Emulator(
        EmulatorConfig(adobe=AdobeConfig(products=300, latency=0.01), seed=11)
    ) as emulator:
        yield emulator


async def syncd(config: Path, *args: str) -> tuple[int, str, str]:
    proc = await start_syncd(config, *args)
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def sync(emu: Emulator, db: Path, kind: RunKind | None = None) -> str:
    """One run in this process (only the killed one needs a process of its own)."""
    settings = settings_for(db, adobe_source(emu, page_size=10, max_concurrency=4))
    async with Runtime(settings) as runtime:
        result = await runtime.sync("shop", kind)
    assert result.ok, result.error
    return result.kind


def table(db: Path) -> dict[str, tuple[str, bool]]:
    """sku -> (content hash, tombstoned) of every row of `products`, live or not."""
    rows = query(db, "SELECT sku, content_hash, deleted_at IS NOT NULL FROM products")
    return {sku: (content_hash, bool(deleted)) for sku, content_hash, deleted in rows}


def replay(lines: list[dict[str, Any]]) -> dict[str, tuple[str, bool]]:
    rebuilt: dict[str, tuple[str, bool]] = {}
    for entry in lines:
        rebuilt[entry["sku"]] = (entry["content_hash"], entry["op"] == "deleted")
    return rebuilt


async def test_feed_replayed_from_zero_rebuilds_products_after_a_sigkill(
    tmp_path: Path, emu: Emulator
) -> None:
    config = write_config(tmp_path, emu)
    db = tmp_path / "syncd.db"
    catalog = emu.adobe.catalog
    skus = sorted(catalog.skus())

    # Run 1: killed mid-scan; the pages it committed keep their entries, nothing half-written.
    proc = await start_syncd(config, "sync", "shop")
    await until(lambda: stored_count(db) >= 100, limit=30)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    assert query(db, "SELECT status FROM sync_runs") == [("running",)]
    assert query(db, "SELECT count(*) FROM product_changes") == query(
        db, "SELECT count(*) FROM products"
    )

    # Run 2 resumes the scan over a catalog that changed meanwhile (some of it already stored).
    stored = sorted(row[0] for row in query(db, "SELECT sku FROM products"))
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
