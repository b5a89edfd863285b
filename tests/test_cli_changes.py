"""`syncd changes` and `syncd export`: output shapes, limits, the resync error, `--follow` stopped
by a signal, and the webhook backlog in `status`."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syncd.cli import main
from syncd.sources.base import make_record
from syncd.store import PageCommit, ProductRecord, RunProgress, SqliteStore
from syncd.store.postgres import PostgresStore
from tests.clocks import FakeClock

T0 = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)
"""When the catalog changed; the commands run 30 days later (`main`'s clock)."""
NOW = T0 + timedelta(days=30)
CONFIG = """
[store]
path = "{db}"
{url}

[[sources]]
name = "shop"
kind = "adobe_commerce"
base_url = "https://shop.example.com"
schedule = "15m"
[sources.auth]
client_id = "cid"
org_id = "ORG@AdobeOrg"

[[webhooks]]
name = "search"
url = "http://127.0.0.1:9/hook"
sources = ["shop"]
"""


def product(sku: str, price: float) -> ProductRecord:
    item = {"sku": sku, "name": 'Widget, "large"', "price": price}
    return make_record(
        item, sku=sku, id=1, name="Widget, \"large\"", price=price, status=1, type_id="simple",
        updated_at=None,
    )  # fmt: skip


Backend = Callable[[], SqliteStore | PostgresStore]
"""Opens (not yet entered) the store the test's configuration selects."""


async def populate(backend: Backend) -> None:
    async with backend() as store:
        await store.commit_page(
            "shop", [product(f"p{i}", 1) for i in range(5)], T0, PageCommit(run=RunProgress(1))
        )
        await store.commit_page(
            "shop", [product("p0", 2)], T0, PageCommit(run=RunProgress(2), scan_id=9)
        )
        await store.finish_full_scan("shop", 9, T0, tombstone=True, watermark=None, run_id=2)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each backend: the commands read the feed through whichever the configuration selects."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return lambda: PostgresStore(url)
    return lambda: SqliteStore(tmp_path / "syncd.db")


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: Backend) -> Path:
    asyncio.run(populate(backend))
    monkeypatch.setenv("SYNCD_SECRET_SHOP_CLIENT_SECRET", "s3cret-shop")
    monkeypatch.setenv("SYNCD_SECRET_WEBHOOK_SEARCH_SECRET", "whsec-search-secret")
    path = tmp_path / "syncd.toml"
    store = backend()
    url = f'url = "{store.url}"' if isinstance(store, PostgresStore) else ""
    path.write_text(CONFIG.format(db=tmp_path / "syncd.db", url=url))
    return path


def run(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["--config", str(config), *args], clock=FakeClock(NOW))
    out, err = capsys.readouterr()
    return code, out, err


def test_changes_as_json_lines_from_a_seq_with_a_limit(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(config, capsys, "changes", "shop", "--since", "0", "--json")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(e["seq"], e["sku"], e["op"], e["run_id"]) for e in lines] == [
        (1, "p0", "created", 1), (2, "p1", "created", 1), (3, "p2", "created", 1),
        (4, "p3", "created", 1), (5, "p4", "created", 1), (6, "p0", "updated", 2),
        (7, "p1", "deleted", 2), (8, "p2", "deleted", 2), (9, "p3", "deleted", 2),
        (10, "p4", "deleted", 2),
    ]  # fmt: skip
    assert lines[5]["payload"] == {"sku": "p0", "name": 'Widget, "large"', "price": 2}
    assert lines[0]["at"].endswith(".000Z")
    code, out, _ = run(config, capsys, "changes", "--since", "5", "--limit", "2")
    assert code == 0
    assert [line.split()[:4] for line in out.splitlines()] == [
        ["shop", "6", "updated", "p0"],
        ["shop", "7", "deleted", "p1"],
    ]


def test_a_cursor_behind_retention_is_told_to_resync(
    config: Path, backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    async def prune() -> None:
        async with backend() as store:
            await store.upsert_products("shop", [product("p9", 1)], T0 + timedelta(days=2))
            assert await store.prune_changes(T0 + timedelta(days=1)) == 10

    asyncio.run(prune())
    code, _, err = run(config, capsys, "changes", "shop", "--since", "3")
    assert code == 1
    assert "retention removed every entry up to seq 10" in err
    assert "syncd export shop" in err and len(err.strip().splitlines()) == 1
    code, out, _ = run(config, capsys, "changes", "shop", "--since", "10", "--json")
    assert code == 0 and json.loads(out)["seq"] == 11


def test_unknown_source_and_bad_numbers_are_one_line(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(config, capsys, "changes", "nope")
    assert code == 2 and "'nope' is not configured" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", str(config), "changes", "--since", "-1"], clock=FakeClock(NOW))
    assert exit_info.value.code == 2
    assert "'-1' is invalid" in capsys.readouterr().err


def test_export_streams_the_live_catalog_and_names_the_seq(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(config, capsys, "export", "shop", "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["sku"], r["price"], r["name"]) for r in rows] == [("p0", "2.0", 'Widget, "large"')]
    assert json.loads(rows[0]["payload"])["price"] == 2
    assert "as of change-feed seq 10" in err and "syncd changes shop --since 10" in err
    code, out, _ = run(config, capsys, "export", "shop")
    assert [json.loads(line)["sku"] for line in out.splitlines()] == ["p0"]


def test_status_shows_the_feed_and_the_webhook_backlog(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(config, capsys, "status", "--json")
    assert code == 0
    document = json.loads(out)
    assert document["feed"] == {"shop": {"source": "shop", "last_seq": 10, "pruned_through": 0}}
    assert document["webhooks"] == [{"webhook": "search", "source": "shop", "backlog": 10}]
    code, out, _ = run(config, capsys, "status")
    assert "webhook search -> shop: 10 entries pending" in out
    assert "whsec-search-secret" not in out


async def test_follow_prints_new_entries_and_stops_on_sigterm(
    config: Path, backend: Backend
) -> None:
    """SQLite polls (every 0.02 s here); PostgreSQL is woken by NOTIFY: its poll interval (60 s)
    is far longer than the test waits, so only the notice can deliver the second entry."""
    listens = isinstance(backend(), PostgresStore)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "syncd", "--config", str(config), "changes", "shop", "--since",
        "10", "--follow", "--json", "--interval", "60" if listens else "0.02",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    async with backend() as store:
        await store.upsert_products("shop", [product("p7", 1)], T0)
        async with asyncio.timeout(20):
            first = json.loads(await proc.stdout.readline())
        await store.upsert_products("shop", [product("p8", 1)], T0)
        async with asyncio.timeout(10):
            second = json.loads(await proc.stdout.readline())
    assert (first["seq"], first["sku"], second["seq"], second["sku"]) == (11, "p7", 12, "p8")
    proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(10):
        _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
