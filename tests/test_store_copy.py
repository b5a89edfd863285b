"""`syncd store copy --to postgresql://…`: every table arrives intact, a non-empty target is refused."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from syncd.cli import main
from syncd.store import PageCommit, RunTotals, SourceRate, SqliteStore, TokenEvent, TokenRecord
from syncd.store.postgres import PostgresStore
from syncd.store.postgres_schema import TABLES
from syncd.store.rows import iso
from tests.test_store_conformance import product

T0 = datetime(2026, 1, 1, tzinfo=UTC)
KEYS = {
    "products": "source, sku",
    "sync_runs": "id",
    "token_events": "id",
    "tokens": "cache_key",
    "source_state": "source",
    "full_scan_seen": "source, scan_id, sku",
    "source_rates": "source",
    "product_changes": "source, seq",
    "change_sequences": "source",
    "webhook_cursors": "webhook, source",
    "token_event_tallies": "source, event",
}


async def populate(db: Path) -> None:
    """A store with a row in every table: live and tombstoned products, runs, events, state."""
    async with SqliteStore(db) as store:
        await store.commit_page("shop", [product(f"p{i}") for i in range(1, 6)], T0, PageCommit())
        await store.commit_page(
            "ac", [product("p1", name='Ünïcode "quoted"\tTab')], T0, PageCommit()
        )
        await store.commit_page("shop", [product("p1")], T0, PageCommit(scan_id=3))
        await store.finish_full_scan("shop", 3, T0, tombstone=True, watermark='{"since": "x"}')
        await store.commit_page(
            "shop", [product("p2", price=9.5)], T0, PageCommit(scan_id=4, checkpoint='{"page": 2}')
        )
        run = await store.start_run("shop", "full", T0, "host:1:x")
        await store.finish_run(run, "succeeded", RunTotals(1, 5, 5, 0, 0, 4, 2, 1, 0), T0)
        await store.start_run("ac", "incremental", T0 + timedelta(minutes=1), "host:1:x")
        await store.add_token_event(
            TokenEvent("ac", T0, "issued", T0 + timedelta(hours=1), "ab12", None)
        )
        await store.add_token_event(TokenEvent("ac", T0, "failed", None, None, "refused: 401"))
        await store.save_token(
            "ac:key", TokenRecord("access", T0 + timedelta(hours=1), "refresh", T0), T0
        )
        await store.set_needs_reauth("ac", "grant revoked", T0)
        await store.save_source_rate(SourceRate("shop", 2.5, T0 + timedelta(seconds=30), T0))
        await store.add_token_event(TokenEvent("ac", T0, "refreshed", None, "cd34", None, "r1"))
        await store.set_webhook_cursor("search", "shop", 7, T0)
        # A newer grant, so that retention prunes the first and tallies it.
        await store.add_token_event(TokenEvent("ac", T0 + timedelta(minutes=1), "issued"))
        assert await store.prune_token_events(T0 + timedelta(days=1)) == 1


def rows(
    table: str, sqlite_path: Path | None = None, url: str | None = None
) -> list[tuple[Any, ...]]:
    """Every row of `table` from either database, comparable: times as ISO text, JSON parsed."""
    if sqlite_path is not None:
        with sqlite3.connect(sqlite_path) as conn:
            raw = conn.execute(f"SELECT * FROM {table} ORDER BY {KEYS[table]}").fetchall()
            names = [d[0] for d in conn.execute(f"SELECT * FROM {table} LIMIT 0").description]
    else:
        assert url is not None
        with psycopg.connect(url) as pg:
            cursor = pg.execute(f"SELECT * FROM {table} ORDER BY {KEYS[table]}")
            raw = cursor.fetchall()
            names = [d.name for d in cursor.description or ()]
    return [
        tuple(
            iso(v) if isinstance(v, datetime) else json.loads(v) if name == "payload" and isinstance(v, str) else v
            for name, v in zip(names, row, strict=True)
        )
        for row in raw
    ]  # fmt: skip


@pytest.fixture
def config(tmp_path: Path) -> Path:
    db = tmp_path / "syncd.db"
    asyncio.run(populate(db))
    path = tmp_path / "syncd.toml"
    path.write_text(f'[store]\npath = "{db}"\n', encoding="utf-8")
    return path


def test_copy_moves_every_table_exactly(
    config: Path, postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each table of the copy equals the SQLite one, row by row; the ids continue after it."""
    assert main(["--config", str(config), "store", "copy", "--to", postgres_url]) == 0
    out = capsys.readouterr().out
    assert "  products: 6 row(s)" in out and "copied 31 row(s)" in out
    for table in TABLES:
        expected = rows(table, sqlite_path=tmp_path / "syncd.db")
        assert rows(table, url=postgres_url) == expected, table
        assert expected, f"{table} was not populated"

    async def through_the_protocol() -> None:
        async with SqliteStore(tmp_path / "syncd.db") as old, PostgresStore(postgres_url) as new:
            assert await new.runs() == await old.runs()
            assert await new.token_events() == await old.token_events()
            assert await new.token_event_counts() == await old.token_event_counts()
            assert await new.load_token("ac:key") == await old.load_token("ac:key")
            for source in ("shop", "ac"):
                assert await new.source_state(source) == await old.source_state(source)
                assert await new.count_products(source) == await old.count_products(source)
                moved = [replace(e, payload=None) for e in await new.changes(source, 0, 100)]
                assert moved == [
                    replace(e, payload=None) for e in await old.changes(source, 0, 100)
                ]
            assert await new.feed_heads() == await old.feed_heads()
            assert await new.webhook_cursors("search") == {"shop": 7}
            assert await new.start_run("shop", "full", T0) == 3  # after the copied ids 1 and 2

    asyncio.run(through_the_protocol())


def test_a_non_empty_target_is_refused_unless_forced(
    config: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second copy is one line and exit 1, nothing changed; --force replaces the contents."""
    assert main(["--config", str(config), "store", "copy", "--to", postgres_url]) == 0
    with psycopg.connect(postgres_url, autocommit=True) as pg:
        pg.execute("UPDATE products SET name = 'changed in PostgreSQL'")
    capsys.readouterr()
    assert main(["--config", str(config), "store", "copy", "--to", postgres_url]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("syncd: error: the target database is not empty (products, ")
    assert err.endswith("pass --force to replace its contents") and "\n" not in err
    with psycopg.connect(postgres_url) as pg:
        assert pg.execute("SELECT DISTINCT name FROM products").fetchall() == [
            ("changed in PostgreSQL",)
        ]
    assert main(["--config", str(config), "store", "copy", "--to", postgres_url, "--force"]) == 0
    with psycopg.connect(postgres_url) as pg:
        assert pg.execute(
            "SELECT count(*) FROM products WHERE name LIKE 'changed%'"
        ).fetchone() == (0,)
        assert pg.execute("SELECT count(*) FROM sync_runs").fetchone() == (2,)


@pytest.mark.parametrize(
    ("to", "expected"),
    [
        ("mysql://host/db", "syncd: error: --to: expected postgresql://user@host:5432/database"),
        (
            "postgresql://u:pw@127.0.0.1/db",
            "syncd: error: --to: carries a password: remove it and set "
            "SYNCD_SECRET_STORE_PASSWORD (or the secret file store.password) instead",
        ),
    ],
)
def test_a_bad_target_url_is_one_line_and_exit_2(
    config: Path, to: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The URL is checked before anything is opened; the message never repeats a password."""
    assert main(["--config", str(config), "store", "copy", "--to", to]) == 2
    assert capsys.readouterr().err.strip() == expected


def test_a_missing_sqlite_file_is_one_line(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--from a file that does not exist: exit 1 and one line naming it; the target stays empty."""
    config = tmp_path / "syncd.toml"
    config.write_text("", encoding="utf-8")
    missing = tmp_path / "none.db"
    args = ["--config", str(config), "store", "copy", "--to", postgres_url, "--from", str(missing)]
    assert main(args) == 1
    assert capsys.readouterr().err.strip() == (
        f"syncd: error: no SQLite database at {str(missing)!r}: expected the file to copy from"
    )
    assert not missing.exists()
