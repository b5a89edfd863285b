"""Moving a SQLite store into PostgreSQL: every table, with COPY, in one transaction.

The target gets every row with its ids (run ids stay the ids operators saw), its times as
`timestamptz` and its payloads as `jsonb`; the identity sequences continue after the copied ids.
Either everything is copied or, on any error, nothing is: the transaction rolls back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
import psycopg
from psycopg import sql

from syncd.errors import StoreError
from syncd.store.postgres import PostgresStore, first_line
from syncd.store.postgres_schema import TABLES
from syncd.store.sqlite import SqliteStore

_BATCH = 5000
_BOOLEAN_COLUMNS = frozenset({("source_state", "needs_reauth")})
_IDENTITY_TABLES = ("sync_runs", "token_events")


@dataclass(frozen=True, slots=True)
class CopyReport:
    """Rows copied per table, in `TABLES` order."""

    rows: dict[str, int]


async def sqlite_columns(db: aiosqlite.Connection, table: str) -> list[str]:
    """The columns of SQLite table `table`, in order."""
    async with db.execute(f"PRAGMA table_info({table})") as cursor:
        return [str(row[1]) for row in await cursor.fetchall()]


async def postgres_columns(conn: psycopg.AsyncConnection[Any], table: str) -> list[str]:
    """The columns of PostgreSQL table `table`, in order."""
    cursor = await conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = "
        "current_schema() AND table_name = %s ORDER BY ordinal_position",
        (table,),
    )
    return [str(row[0]) for row in await cursor.fetchall()]


async def copy_sqlite_to_postgres(
    source: Path,
    target: PostgresStore,
    *,
    force: bool = False,
    progress: Callable[[str, int], None] | None = None,
) -> CopyReport:
    """Copy every table of the SQLite store at `source` into the open `target`.

    A target that already holds rows is refused (StoreError) unless `force`, which empties it
    first, in the same transaction as the copy.
    """
    if not await asyncio.to_thread(source.is_file):
        raise StoreError(f"no SQLite database at {str(source)!r}: expected the file to copy from")
    # Opening it brings an older file to the current schema, as every command would.
    async with SqliteStore(source):
        pass
    counts: dict[str, int] = {}
    try:
        async with (
            aiosqlite.connect(f"file:{source}?mode=ro", uri=True) as db,
            await psycopg.AsyncConnection.connect(target.conninfo) as conn,
            conn.transaction(),
        ):
            await _check_target(conn, force)
            for table in TABLES:
                counts[table] = await _copy_table(db, conn, table)
                if progress is not None:
                    progress(table, counts[table])
            for table in _IDENTITY_TABLES:
                await conn.execute(
                    sql.SQL(
                        "SELECT setval(pg_get_serial_sequence({t}, 'id'), "
                        "coalesce(max(id), 1), max(id) IS NOT NULL) FROM {i}"
                    ).format(t=sql.Literal(table), i=sql.Identifier(table))
                )
    except psycopg.Error as exc:
        raise StoreError(f"cannot copy into {target.url}: {first_line(exc)}") from exc
    except aiosqlite.Error as exc:
        raise StoreError(f"cannot read {str(source)!r}: {exc}") from exc
    return CopyReport(counts)


async def _check_target(conn: psycopg.AsyncConnection[Any], force: bool) -> None:
    busy = []
    for table in TABLES:
        query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(table))
        row = await (await conn.execute(query)).fetchone()
        if row and row[0]:
            busy.append(table)
    if busy and not force:
        raise StoreError(
            f"the target database is not empty ({', '.join(busy)} hold rows): copy into an "
            "empty database, or pass --force to replace its contents"
        )
    if busy:
        await conn.execute(
            sql.SQL("TRUNCATE {} RESTART IDENTITY").format(
                sql.SQL(", ").join(sql.Identifier(t) for t in TABLES)
            )
        )


async def _copy_table(
    db: aiosqlite.Connection, conn: psycopg.AsyncConnection[Any], table: str
) -> int:
    columns = await sqlite_columns(db, table)
    missing = [c for c in columns if c not in await postgres_columns(conn, table)]
    if missing:
        # Never drop data silently: the PostgreSQL schema must gain the column first.
        raise StoreError(
            f"SQLite table {table} has column(s) {', '.join(missing)} that the PostgreSQL "
            "schema lacks: this syncd cannot copy them"
        )
    booleans = [i for i, c in enumerate(columns) if (table, c) in _BOOLEAN_COLUMNS]
    names = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    copied = 0
    cursor = conn.cursor()
    query = sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(table), names)
    async with (
        cursor.copy(query) as copy,
        db.execute(sql_select(table, columns)) as rows,
    ):
        while batch := list(await rows.fetchmany(_BATCH)):
            for row in batch:
                # Text COPY: PostgreSQL parses the ISO times and the JSON payloads itself.
                await copy.write_row(_converted(row, booleans))
            copied += len(batch)
    return copied


def sql_select(table: str, columns: Sequence[str]) -> str:
    """SELECT of `columns` of SQLite table `table` (names come from the schema, not input)."""
    return f"SELECT {', '.join(columns)} FROM {table}"


def _converted(row: Sequence[Any], booleans: Sequence[int]) -> Sequence[Any]:
    if not booleans:
        return row
    values = list(row)
    for index in booleans:
        values[index] = None if values[index] is None else bool(values[index])
    return values
