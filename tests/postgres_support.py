"""A throwaway PostgreSQL database for the tests that need one, or a clear skip.

The server is `$SYNCD_TEST_POSTGRES_URL` (default: the local one, trust auth). A test session
creates one uniquely named database and drops it at the end. Without a reachable server the tests
skip and say why, unless `SYNCD_REQUIRE_POSTGRES=1` (set by CI), which makes that a failure.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from syncd.store.postgres_schema import COORDINATION_TABLES, TABLES

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_url() -> str:
    """The maintenance database of the test server."""
    return os.environ.get("SYNCD_TEST_POSTGRES_URL", DEFAULT_SERVER)


def unavailable(reason: str) -> None:
    """Skip, or fail when the environment requires PostgreSQL."""
    if os.environ.get("SYNCD_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"SYNCD_REQUIRE_POSTGRES=1 but {reason}", pytrace=False)
    pytest.skip(f"{reason} (set SYNCD_TEST_POSTGRES_URL, or SYNCD_REQUIRE_POSTGRES=1 to fail)")


def database_url(name: str) -> str:
    """The URL of database `name` on the test server."""
    return urlunsplit(urlsplit(server_url())._replace(path=f"/{name}"))


@contextmanager
def throwaway_database(prefix: str = "syncd_test") -> Iterator[str]:
    """Create a uniquely named database, yield its URL, drop it (even if still connected)."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        admin = psycopg.connect(server_url(), autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        unavailable(f"no PostgreSQL server at {server_url()}: {str(exc).strip().splitlines()[0]}")
        raise  # unreachable: unavailable() raises
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield database_url(name)
        finally:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def empty_tables(url: str) -> None:
    """Remove every row of the store's tables (if they exist yet), restarting the ids."""
    with psycopg.connect(url, autocommit=True) as conn:
        present = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename = ANY(%s)",
                ([*TABLES, *COORDINATION_TABLES],),
            )
        ]
        # DELETE, not TRUNCATE: the tables hold a few rows, and TRUNCATE recreates (and syncs)
        # every file, which cost more than the test itself.
        for table in present:
            conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
            if table in ("sync_runs", "token_events"):
                conn.execute(
                    sql.SQL("ALTER TABLE {} ALTER COLUMN id RESTART").format(sql.Identifier(table))
                )
