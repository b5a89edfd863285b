"""`syncd store copy --to postgresql://…`: move the SQLite store into PostgreSQL, for scaling out."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from syncd.config import Settings
from syncd.config.settings import StoreSettings
from syncd.store.postgres import PostgresStore
from syncd.store.postgres_copy import copy_sqlite_to_postgres

EXIT_USAGE = 2


def add_parser(commands: Any) -> None:
    """Register `syncd store copy` on the CLI's sub-command set."""
    store = commands.add_parser("store", help="manage the database (copy SQLite into PostgreSQL)")
    actions = store.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    copy = actions.add_parser(
        "copy", help="copy the SQLite store (products, runs, tokens, state) into PostgreSQL"
    )
    copy.add_argument(
        "--to", required=True, metavar="URL", help="postgresql://user@host:5432/database"
    )
    copy.add_argument(
        "--from",
        dest="source",
        type=Path,
        metavar="PATH",
        help="the SQLite file (default: [store] path of the configuration)",
    )
    copy.add_argument(
        "--force", action="store_true", help="replace the target's rows if it is not empty"
    )


async def copy_store(args: argparse.Namespace, settings: Settings) -> int:
    """Copy every table; print one line per table and a total. Errors are one line (StoreError)."""
    try:
        StoreSettings(url=args.to)
    except ValidationError as exc:
        problem = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        print(f"syncd: error: --to: {problem}", file=sys.stderr)
        return EXIT_USAGE
    source = args.source or settings.store.path
    password = settings.store.password.get_secret_value() if settings.store.password else None
    async with PostgresStore(args.to, password=password) as store:
        print(f"copying {source} into {store.url}")
        report = await copy_sqlite_to_postgres(
            Path(source),
            store,
            force=args.force,
            progress=lambda table, rows: print(f"  {table}: {rows} row(s)"),
        )
    print(f"copied {sum(report.rows.values())} row(s); set [store] url to use PostgreSQL")
    return 0
