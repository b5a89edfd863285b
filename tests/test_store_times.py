"""Stored times are ISO-8601 UTC with milliseconds for both platforms and syncd's own columns,
old databases are migrated, and a running run's row counts its pages as they are committed."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig
from syncd.runtime import Runtime
from syncd.sources.base import make_record
from syncd.store import PageCommit, ProductRecord, RunProgress, RunTotals, SqliteStore
from syncd.store.rows import stored_time
from syncd.store.schema import MIGRATIONS, SCHEMA_VERSION
from tests.support import adobe_source, query, settings_for

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def product(sku: str, updated_at: str | None) -> ProductRecord:
    item = {"sku": sku, "id": int(sku[1:]), "updated_at": updated_at}
    return make_record(
        item, sku=sku, id=int(sku[1:]), name=None, price=None, status=None, type_id=None,
        updated_at=updated_at,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("received", "stored"),
    [
        ("2025-12-05 00:22:02", "2025-12-05T00:22:02.000Z"),  # Magento: naive, UTC
        ("2025-12-05T13:24:05.861Z", "2025-12-05T13:24:05.861Z"),  # AmeriCommerce, normalised
        ("2025-12-05T13:24:05.861+02:00", "2025-12-05T11:24:05.861Z"),
        ("2025-12-05T13:24:05.8613333Z", "2025-12-05T13:24:05.861Z"),
        ("not a time", "not a time"),  # kept as received: nothing is dropped
        (None, None),
    ],
)
def test_a_platform_time_is_stored_in_the_one_form(received: str | None, stored: str) -> None:
    """Whatever form the platform sends, the column holds `YYYY-MM-DDTHH:MM:SS.mmmZ`."""
    assert stored_time(received) == stored


@pytest.mark.parametrize(
    "received",
    [
        "2024-02-29 23:59:59",
        "0001-01-01 00:00:00",
        "9999-12-31 23:59:59",
        "2025-13-05 00:22:02",  # no month 13: kept as received
        "2025-02-29 00:22:02",  # no such day
        "2025-12-05 24:00:00",
        "2025-12-05 0a:22:02",
        "2025-12-05T00:22:02",  # the ISO separator: the general path
        " 025-12-05 00:22:02",  # Magento's length and separators, but no year
    ],
)
def test_magentos_form_is_stored_as_the_general_path_stores_it(received: str) -> None:
    """The shortcut for `YYYY-MM-DD HH:MM:SS` gives what parsing and formatting give, and
    keeps what does not parse as received."""
    try:
        expected = datetime.fromisoformat(received.strip()).isoformat(timespec="milliseconds")
        expected += "Z"
    except ValueError:
        expected = received
    assert stored_time(received) == expected


async def test_both_platforms_forms_share_the_column_and_sort_as_times(
    store: SqliteStore, tmp_path: Path
) -> None:
    """An Adobe and an AmeriCommerce row in one column: one form, so text order is time order
    (before, `2025-12-05 23:00:00` sorted before `2025-12-05T01:00:00.000Z`)."""
    await store.upsert_products("adobe", [product("p1", "2025-12-05 23:00:00")], T0)
    await store.upsert_products("ac", [product("p2", "2025-12-05T01:00:00.500Z")], T0)
    rows = query(
        tmp_path / "syncd.db", "SELECT source, updated_at FROM products ORDER BY updated_at"
    )
    assert rows == [("ac", "2025-12-05T01:00:00.500Z"), ("adobe", "2025-12-05T23:00:00.000Z")]


async def test_run_times_keep_their_milliseconds(store: SqliteStore, tmp_path: Path) -> None:
    """A 9 ms run shows 9 ms, not a second: every syncd time column has milliseconds."""
    run_id = await store.start_run("s", "full", T0 + timedelta(microseconds=991_000))
    await store.finish_run(run_id, "succeeded", RunTotals(), T0 + timedelta(seconds=1))
    [run] = await store.runs()
    assert (run.started_at, run.finished_at) == (
        "2026-01-01T00:00:00.991Z",
        "2026-01-01T00:00:01.000Z",
    )
    await store.upsert_products("s", [product("p1", None)], T0 + timedelta(milliseconds=5))
    await store.set_needs_reauth("s", None, T0)
    for table, column in (
        ("products", "first_seen_at"),
        ("products", "last_synced_at"),
        ("sync_runs", "started_at"),
        ("source_state", "updated_at"),
    ):
        [(value,)] = query(tmp_path / "syncd.db", f"SELECT {column} FROM {table}")
        assert ISO_MS.match(value), (table, column, value)


def old_database(path: Path) -> None:
    """A database written by syncd at schema 2: Magento times as received, its own to the second."""
    with sqlite3.connect(path) as conn:
        for script in MIGRATIONS[:2]:
            conn.executescript(script)
        conn.execute("PRAGMA user_version = 2")
        conn.executemany(
            "INSERT INTO products (source, sku, updated_at, payload, content_hash, first_seen_at, "
            "last_synced_at, deleted_at) VALUES (?,?,?,'{}','h',?,?,?)",
            [
                ("adobe", "a1", "2025-12-05 00:22:02", "2026-01-01T00:00:00Z",
                 "2026-01-02T03:04:05Z", None),
                ("ac", "c1", "2025-12-05T13:24:05.861Z", "2026-01-01T00:00:00Z",
                 "2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z"),
                ("odd", "x1", "yesterday", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", None),
            ],
        )  # fmt: skip
        conn.execute(
            "INSERT INTO sync_runs (source, kind, started_at, finished_at, status) "
            "VALUES ('adobe', 'full', '2026-01-01T00:00:00Z', '2026-01-01T00:00:01Z', 'succeeded')"
        )
        conn.execute(
            "INSERT INTO token_events (source, at, event, expires_at) "
            "VALUES ('adobe', '2026-01-01T00:00:00Z', 'issued', '2026-01-02T00:00:00Z')"
        )
        conn.execute(
            "INSERT INTO tokens (cache_key, access_token, expires_at, issued_at, updated_at) "
            "VALUES ('k', 't', '2026-01-02T00:00:00Z', NULL, '2026-01-01T00:00:00Z')"
        )
        conn.execute(
            "INSERT INTO source_state (source, updated_at) VALUES ('adobe', '2026-01-01T00:00:00Z')"
        )


async def test_an_old_database_is_migrated_to_the_one_form(tmp_path: Path) -> None:
    """Schema 2 rows are rewritten in place, in UTC with milliseconds; what is no time stays."""
    path = tmp_path / "old.db"
    old_database(path)
    async with SqliteStore(path) as store:
        [run] = await store.runs()
        assert (run.started_at, run.finished_at) == (
            "2026-01-01T00:00:00.000Z",
            "2026-01-01T00:00:01.000Z",
        )
        [event] = await store.token_events()
        assert event.at == T0
        token = await store.load_token("k")
        assert token is not None and token.expires_at == T0 + timedelta(days=1)
    assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert query(
        path,
        "SELECT sku, updated_at, first_seen_at, last_synced_at, deleted_at FROM products "
        "ORDER BY sku",
    ) == [
        ("a1", "2025-12-05T00:22:02.000Z", "2026-01-01T00:00:00.000Z",
         "2026-01-02T03:04:05.000Z", None),
        ("c1", "2025-12-05T13:24:05.861Z", "2026-01-01T00:00:00.000Z",
         "2026-01-01T00:00:00.000Z", "2026-01-03T00:00:00.000Z"),
        ("x1", "yesterday", "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.000Z", None),
    ]  # fmt: skip
    assert query(path, "SELECT at, expires_at FROM token_events") == [
        ("2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z")
    ]
    assert query(path, "SELECT expires_at, issued_at, updated_at FROM tokens") == [
        ("2026-01-02T00:00:00.000Z", None, "2026-01-01T00:00:00.000Z")
    ]
    assert query(path, "SELECT updated_at FROM source_state") == [("2026-01-01T00:00:00.000Z",)]


async def test_a_page_commit_adds_to_its_running_runs_counters(store: SqliteStore) -> None:
    """Each page adds its items and sets the request counters; a closed run is left alone."""
    run_id = await store.start_run("s", "full", T0)
    live = PageCommit(run=RunProgress(run_id, requests=3, retries=1, rate_limited=0))
    await store.commit_page("s", [product("p1", None), product("p2", None)], T0, live)
    [run] = await store.last_runs()
    assert (run.status, run.totals) == (
        "running",
        RunTotals(pages=1, items_seen=2, items_created=2, requests=3, retries=1),
    )
    later = PageCommit(run=RunProgress(run_id, requests=5, retries=1, rate_limited=2))
    await store.commit_page("s", [product("p1", None), product("p3", None)], T0, later)
    [run] = await store.last_runs()
    assert run.totals == RunTotals(
        pages=2, items_seen=4, items_created=3, items_unchanged=1, requests=5, retries=1,
        rate_limited=2,
    )  # fmt: skip
    final = RunTotals(pages=2, items_seen=4, items_created=3, items_unchanged=1, requests=6)
    await store.finish_run(run_id, "succeeded", final, T0)
    await store.commit_page("s", [product("p4", None)], T0, later)  # a stray late page
    [run] = await store.last_runs()
    assert (run.status, run.totals) == ("succeeded", final)


async def test_a_running_sync_shows_its_progress_page_by_page(tmp_path: Path) -> None:
    """What `syncd status` reads while a full sync runs: after each committed page, its row
    (read by another connection, as the status command does) counts exactly the pages so far."""
    db = tmp_path / "live.db"
    seen: list[tuple[int, str, int, int, int]] = []

    def progress(pages: int, expected: int | None, items: int) -> None:
        with sqlite3.connect(db) as conn:
            row = conn.execute(
                "SELECT pages, status, items_seen, items_created, requests FROM sync_runs"
            ).fetchone()
        seen.append(row)
        assert row[:3] == (pages, "running", items)

    config = EmulatorConfig(adobe=AdobeConfig(products=45), seed=4)
    async with Emulator(config) as emu:
        source = adobe_source(emu, page_size=10, max_concurrency=1)
        async with Runtime(settings_for(db, source)) as runtime:
            result = await runtime.sync("shop", "full", progress=progress)
    assert result.ok, result.error
    assert [row[0] for row in seen] == [1, 2, 3, 4, 5]
    assert [row[3] for row in seen] == [10, 20, 30, 40, 45]
    assert all(row[4] >= row[0] for row in seen)  # at least one request per page so far
    [(pages, status, items)] = query(db, "SELECT pages, status, items_seen FROM sync_runs")
    assert (pages, status, items) == (5, "succeeded", 45)
