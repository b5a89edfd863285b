"""The dialects the shared statements are bound through (store/statements.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from syncd.store.postgres import PostgresStore
from syncd.store.sqlite import SqliteStore

T0 = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def test_placeholders_become_each_backends() -> None:
    text = "SELECT 1 FROM t WHERE a = ? AND b = ?"
    assert SqliteStore.dialect.sql(text) == text
    assert PostgresStore.dialect.sql(text) == "SELECT 1 FROM t WHERE a = %s AND b = %s"


def test_a_percent_sign_is_refused_where_psycopg_would_misread_it() -> None:
    with pytest.raises(ValueError, match="may not contain '%'"):
        PostgresStore.dialect.sql("SELECT 1 WHERE name LIKE 'a%'")
    assert SqliteStore.dialect.sql("SELECT '%'") == "SELECT '%'"


def test_filters_bind_times_and_lists_as_each_backend_reads_them() -> None:
    lite, pg = SqliteStore.dialect, PostgresStore.dialect
    assert lite.where(source="s", at=T0, event=["a", "b"], status=None) == (
        "WHERE source = ? AND at >= ? AND event IN (?, ?)",
        ["s", "2026-01-02T03:04:05.678Z", "a", "b"],
    )
    assert pg.where(source="s", at=T0, event=("a", "b")) == (
        "WHERE source = ? AND at >= ? AND event = ANY(?)",
        ["s", T0, ["a", "b"]],
    )
    assert lite.where() == ("", [])


def test_a_run_row_reads_alike_from_either_backend() -> None:
    counters = (1, 2, 3, 4, 5, 6, 7, 8, 9)
    lite_row = (7, "s", "full", "2026-01-02T03:04:05.678Z", None, "running", *counters, None)
    pg_row = (7, "s", "full", T0, None, "running", *counters, None)
    assert SqliteStore.dialect.run(lite_row) == PostgresStore.dialect.run(pg_row)
    assert PostgresStore.dialect.run(pg_row).started_at == "2026-01-02T03:04:05.678Z"
