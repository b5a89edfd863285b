"""What the SQLite store's methods share: time columns as text, the upsert by content hash."""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from syncd.codec import sql_rows
from syncd.store.base import (
    ChangeOp,
    ProductRecord,
    UpsertCounts,
)

# SQLite caps bound parameters per statement; stay well below the oldest default (999).
IN_CHUNK = 500


RUN_COLUMNS = (
    "id, source, kind, started_at, finished_at, status, pages, items_seen, items_created, "
    "items_updated, items_unchanged, items_deleted, requests, retries, rate_limited, error"
)


def iso(moment: datetime | None) -> str | None:
    """ISO-8601 UTC text with milliseconds, as stored in every time column
    (`2025-12-05T00:22:02.000Z`): one width, so that text order is time order."""
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def stored_time(text: str | None) -> str | None:
    """A platform's timestamp as stored: `iso` form, a naive one (Magento's `YYYY-MM-DD
    HH:MM:SS`) read as UTC. Text that is no timestamp is kept as received, never dropped."""
    if text is None:
        return None
    if (
        len(text) == 19
        and text[10] == " "
        and text[4] == text[7] == "-"
        and text[13] == text[16] == ":"
    ):
        # Magento's form, once per product row: `datetime` checks digits and ranges, and the
        # text is rearranged, because formatting the parsed moment costs five times the parse.
        try:
            datetime.fromisoformat(text)
        except ValueError:
            pass  # the general path below decides what is stored
        else:
            return f"{text[:10]}T{text[11:]}.000Z"
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return text
    if moment.tzinfo is None:
        # `iso` of the moment read as UTC, without its two conversions: once per product row.
        return moment.isoformat(timespec="milliseconds") + "Z"
    return iso(moment)


def parse_iso(text: str | None) -> datetime | None:
    """Inverse of `iso`."""
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


def chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    """`items` in slices of at most `size` (to stay under the bound-parameter cap)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


INSERT_BATCH = 50
"""New products per INSERT statement: 2 + 9 x 50 bound values, under the oldest cap (999)."""


def _insert_products(rows: int) -> str:
    """An INSERT of `rows` products; ?1 is the source and ?2 the stamp (first seen and last
    synced) of them all, then nine values per product from ?3 on."""
    values = ",".join(
        f"(?1,{','.join(f'?{3 + 9 * row + n}' for n in range(9))},?2,?2)" for row in range(rows)
    )
    # OR ROLLBACK: a failing row ends the whole page's transaction, as any error in it does. The
    # default (ABORT) would undo only this statement, so SQLite would first copy every page it
    # changes to a statement journal, which past 64 KiB spills to a temporary file.
    return (
        "INSERT OR ROLLBACK INTO products (source, sku, id, name, price, status, type_id, "
        f"updated_at, payload, content_hash, first_seen_at, last_synced_at) VALUES {values}"
    )


# Executed once per product, an INSERT runs its whole program again (and hands the GIL over
# and back) each time; one statement per INSERT_BATCH products does that once. The texts stay
# the same page after page, so sqlite3's statement cache prepares each once.
_INSERT_MANY = _insert_products(INSERT_BATCH)
_INSERT_ONE = _insert_products(1)

Known = dict[str, tuple[str, str | None]]
"""Stored rows by sku: their content hash and tombstone time (None: live)."""


@functools.cache
def _has_json_each() -> bool:
    """Whether this process's SQLite has `json_each` (built in since 3.38, an option before)."""
    try:
        with contextlib.closing(sqlite3.connect(":memory:")) as db:
            db.execute("SELECT value FROM json_each('[1]')").fetchall()
    except sqlite3.Error:
        return False
    return True


def json_rows(rows: Sequence[str] | Sequence[Sequence[str]]) -> str | None:
    """`codec.sql_rows(rows)` where SQLite can read it with `json_each`, else None (the caller
    then binds every value)."""
    return sql_rows(rows) if _has_json_each() else None


def upsert(
    db: sqlite3.Connection,
    source: str,
    latest: dict[str, ProductRecord],
    stamp: str | None,
    changed: list[tuple[ChangeOp, ProductRecord]] | None = None,
    known: Known | None = None,
) -> UpsertCounts:
    """Insert new skus, rewrite those whose hash changed or that were tombstoned, count the rest;
    each write is also appended to `changed` (for the change feed) when given. `known`, if
    given, is every stored row among `latest` as the transaction sees it (else they are read).
    Synchronous: it runs inside the caller's transaction on the connection's own thread."""
    if not latest:
        return UpsertCounts()
    if known is None:
        known = {}
        for chunk in chunks(list(latest), IN_CHUNK):
            marks = ",".join("?" * len(chunk))
            for sku, content_hash, deleted_at in db.execute(
                "SELECT sku, content_hash, deleted_at FROM products WHERE source = ? "
                f"AND sku IN ({marks})",
                (source, *chunk),
            ):
                known[sku] = (content_hash, deleted_at)
    inserts: list[tuple[Any, ...]] = []
    updates: list[tuple[Any, ...]] = []
    unchanged = 0
    for sku, r in latest.items():
        # Unpacked once: a named tuple's fields by name cost a descriptor call each, per product.
        _, ident, name, price, status, type_id, updated_at, payload, digest = r
        previous = known.get(sku)
        if previous is None:
            if changed is not None:
                changed.append(("created", r))
            inserts.append(
                (sku, ident, name, price, status, type_id, stored_time(updated_at), payload, digest)
            )
        elif previous[0] != digest or previous[1] is not None:
            # Changed, or tombstoned and now back: rewrite (which also revives it).
            if changed is not None:
                changed.append(("revived" if previous[1] else "updated", r))
            updates.append(
                (ident, name, price, status, type_id, stored_time(updated_at), payload, digest,
                 stamp, source, sku)
            )  # fmt: skip
        else:
            unchanged += 1
    if inserts:
        _insert(db, source, stamp, inserts)
    if updates:
        db.executemany(
            "UPDATE products SET id=?, name=?, price=?, status=?, type_id=?, updated_at=?, "
            "payload=?, content_hash=?, last_synced_at=?, deleted_at=NULL WHERE source=? AND sku=?",
            updates,
        )
    return UpsertCounts(len(inserts), len(updates), unchanged)


def _insert(
    db: sqlite3.Connection, source: str, stamp: str | None, rows: list[tuple[Any, ...]]
) -> None:
    """Insert `rows` (nine values each, from the sku on), in their order, INSERT_BATCH at a time
    and the rest one by one; the source and the stamp are bound once per statement."""
    whole = len(rows) - len(rows) % INSERT_BATCH
    for start in range(0, whole, INSERT_BATCH):
        params: list[Any] = [source, stamp]
        for row in rows[start : start + INSERT_BATCH]:
            params.extend(row)
        db.execute(_INSERT_MANY, params)
    if whole < len(rows):
        db.executemany(_INSERT_ONE, [(source, stamp, *row) for row in rows[whole:]])


def set_progress(
    db: sqlite3.Connection,
    source: str,
    now: datetime,
    checkpoint: str | None,
    watermark: str | None,
) -> None:
    """Write the non-None of checkpoint / watermark (CLEAR stores NULL), in one statement."""
    # A flag per column says whether to replace it: the text stays the same for every page,
    # so sqlite3's statement cache prepares it once.
    db.execute(
        "INSERT INTO source_state (source, updated_at, checkpoint, watermark) VALUES (?,?,?,?) "
        "ON CONFLICT (source) DO UPDATE SET updated_at = excluded.updated_at, "
        "checkpoint = CASE WHEN ? THEN excluded.checkpoint ELSE checkpoint END, "
        "watermark = CASE WHEN ? THEN excluded.watermark ELSE watermark END",
        (source, iso(now), checkpoint or None, watermark or None,
         checkpoint is not None, watermark is not None),
    )  # fmt: skip
