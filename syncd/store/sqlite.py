"""SQLite backend of the `Store` protocol: WAL, migrations, one lock-guarded transaction per call.

The statements PostgreSQL runs alike (runs, tokens, paces, source state) are in statements.py;
here is what SQLite does its own way: the page's write on aiosqlite's thread, the scan marks,
the change feed, run start and pruning.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar, cast

import aiosqlite

from syncd.errors import StoreError
from syncd.logging import get_logger
from syncd.redaction import Redactor
from syncd.store.base import (
    CLEAR,
    ChangeEntry,
    ChangeOp,
    FeedHead,
    PageCommit,
    ProductRecord,
    ProductSnapshot,
    RunKind,
    StoredProduct,
    UpsertCounts,
)
from syncd.store.changes import (
    append_changes,
    append_tombstones,
    open_snapshot,
    prune_chunk,
    prune_cut,
    read_changes,
    read_heads,
    stamp,
)
from syncd.store.history import (
    HistoryTable,
    SqliteChunk,
    history_cut,
    prune_runs_chunk,
    prune_token_events_chunk,
)
from syncd.store.rows import (
    IN_CHUNK,
    Known,
    chunks,
    iso,
    json_rows,
    parse_iso,
    set_progress,
    upsert,
)
from syncd.store.schema import MIGRATIONS, SCHEMA_VERSION, statements
from syncd.store.statements import Dialect, SharedStatements

log = get_logger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _ViewRead:
    """The stored rows the last `scan_view` read, and how to tell whether they are still so:
    the database's `data_version` (moves when another connection commits) and this
    connection's `total_changes` (moves when it writes), both taken before the read."""

    source: str
    skus: frozenset[str]
    data_version: int
    total_changes: int
    known: Known


class SqliteStore(SharedStatements):
    """The daemon's database; use as `async with SqliteStore(path) as store:`.

    Every free text it writes (a run's error, a token event's detail, a re-authorisation reason)
    passes through `redactor` first; credentials (`tokens`) and catalog data are stored as given.
    """

    dialect = Dialect("?", iso, parse_iso, lambda text: text, array_any=False)

    def __init__(
        self,
        path: Path | str,
        *,
        busy_timeout: float = 5.0,
        redactor: Redactor | None = None,
        changes: bool = True,
        change_payloads: bool = False,
    ) -> None:
        self._path = Path(path)
        self._redactor = redactor or Redactor()
        self._busy_timeout = busy_timeout
        self._changes = changes  # append to the change feed (docs/CHANGES.md)
        self._change_payloads = change_payloads  # copy payloads into it, not just refer to them
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self._identity = (0, 0)
        self._file_reported = False
        self._view_read: _ViewRead | None = None  # what the page's commit need not read again
        self.commit_depth = 1  # one writer: the engine waits for each page's commit

    @property
    def path(self) -> Path:
        """Location of the database file."""
        return self._path

    async def __aenter__(self) -> Self:
        if self._closed or self._db is not None:
            raise RuntimeError("SqliteStore cannot be reopened; create a new SqliteStore instead")
        try:
            if self._path.parent != Path():
                self._path.parent.mkdir(parents=True, exist_ok=True)
            _create_private(self._path)
            self._db = await aiosqlite.connect(
                self._path, timeout=self._busy_timeout, isolation_level=None
            )
            opened = os.stat(self._path)
            self._identity = (opened.st_dev, opened.st_ino)
            await self._enable_wal()
            await self._db.execute("PRAGMA synchronous=NORMAL")
            # Checkpoint the WAL every ~40 MB instead of every 4 MB: a full scan writes a few
            # hundred MB, and each checkpoint's fsync stalls the page pipeline (fewer, larger
            # checkpoints: 100k-product full sync median 9.3-10.2k -> 11.2-11.5k products/s).
            await self._db.execute("PRAGMA wal_autocheckpoint=10000")
            await self._db.execute("PRAGMA foreign_keys=ON")
            await self._migrate()
        except (sqlite3.Error, OSError) as exc:
            await self._close()
            raise StoreError(f"cannot open database {str(self._path)!r}: {exc}") from exc
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        self._closed = True
        if self._db is not None:
            if self._identity != (0, 0) and self._file_change() is not None:
                await self._detach_wal()
            db, self._db = self._db, None
            await db.close()

    async def _enable_wal(self) -> None:
        """WAL mode, retried while another connection holds the file: the switch takes an
        exclusive lock without waiting for it (SQLite calls no busy handler there), so two
        processes starting on a fresh file would see 'database is locked'."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._busy_timeout
        while True:
            try:
                await self._conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or loop.time() >= deadline:
                    raise
            await asyncio.sleep(0.01)

    async def _migrate(self) -> None:
        """Bring the schema to SCHEMA_VERSION. The version is read again under the write lock:
        two processes starting on a fresh file both see version 0, and only the first to take
        the lock may create the tables."""
        db = self._conn
        if await self._schema_version() == SCHEMA_VERSION:
            return  # the usual start: no write lock taken
        await db.execute("BEGIN IMMEDIATE")
        try:
            version = await self._schema_version()
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"database {str(self._path)!r} has schema {version}, newer than this syncd "
                    f"({SCHEMA_VERSION}); upgrade syncd"
                )
            for number in range(version + 1, SCHEMA_VERSION + 1):
                for statement in statements(MIGRATIONS[number - 1]):
                    await db.execute(statement)
                await db.execute(f"PRAGMA user_version = {number}")
            await db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                await db.execute("ROLLBACK")
            raise

    async def _schema_version(self) -> int:
        async with self._conn.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def check_file(self) -> None:
        """StoreError if the database file is no longer the one this store opened: deleted, or
        replaced by another file (a restore, a `mv`). SQLite would go on writing to the open,
        unlinked file, and everything written from then on would be lost at the next start.
        Checked before every write transaction; the first time, logs `store.file_changed` and
        detaches the old database's WAL from the path."""
        change = self._file_change()
        if change is None:
            return
        message = (
            f"database {str(self._path)!r} {change} since syncd opened it; nothing is written "
            "to it any more: restart syncd to open the file now at that path"
        )
        if not self._file_reported:
            self._file_reported = True
            await self._detach_wal()
            log.error("store.file_changed", path=str(self._path), change=change, error=message)
        raise StoreError(message)

    async def _detach_wal(self) -> None:
        """Empty the `-wal` file beside the path into the old (unlinked) database. SQLite does
        not delete the WAL of a database that was unlinked or renamed, and whoever opens the
        file now at the path would replay the old database's pages onto it."""
        with contextlib.suppress(sqlite3.Error):
            await self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _file_change(self) -> str | None:
        """What happened to the file at the store's path, or None if it is the one opened."""
        try:
            now = os.stat(self._path)
        except FileNotFoundError:
            return "was deleted"
        except OSError as exc:
            return f"cannot be checked ({exc.strerror})"
        if (now.st_dev, now.st_ino) != self._identity:
            return (
                f"was replaced by another file (device {self._identity[0]} inode "
                f"{self._identity[1]}, now device {now.st_dev} inode {now.st_ino})"
            )
        return None

    def _text(self, text: str | None) -> str | None:
        """Free text as it may be stored: with every registered secret redacted."""
        return None if text is None else self._redactor.redact(text)

    @property
    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError(
                "SqliteStore is not open; use it inside 'async with SqliteStore(...)'"
            )
        return self._db

    @asynccontextmanager
    async def _transaction(self, what: str) -> AsyncIterator[aiosqlite.Connection]:
        """One serialized write transaction; sqlite errors become StoreError naming `what`."""
        db = self._conn
        async with self._lock:
            await self.check_file()
            try:
                await db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot {what}: {exc}") from exc
            try:
                yield db
                await db.execute("COMMIT")
            except BaseException as exc:
                # A failed COMMIT may already have rolled back; then ROLLBACK itself fails.
                with contextlib.suppress(sqlite3.Error):
                    await db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"cannot {what}: {exc}") from exc
                raise

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            # One handoff to aiosqlite's thread (execute + fetchall + close would be three).
            return list(await self._conn.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read from {str(self._path)!r}: {exc}") from exc

    async def _execute(self, what: str, sql: str, params: Sequence[Any]) -> int:
        """One statement in a write transaction of its own; the rows it changed."""
        async with self._transaction(what) as db:
            cursor = await db.execute(sql, params)
            return cursor.rowcount

    async def _on_thread(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(connection)` run whole on aiosqlite's thread, in one handoff.

        Each `await` on an aiosqlite call crosses to its thread and back (a queue put, a thread
        wake-up, a wake-up of the event loop): per page, a dozen statements cost more CPU in
        handoffs than in SQLite. aiosqlite has no public call for "run this function", so this
        uses its queue (`Connection._execute`, there since 0.17); the work runs on the thread
        that owns the sqlite3 connection, in order with every other call queued there.
        """
        db = cast(Any, self._conn)
        return cast(T, await db._execute(work, db._conn))

    async def _write(self, what: str, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` in one serialized write transaction, BEGIN to COMMIT in a single handoff to
        aiosqlite's thread; sqlite errors become StoreError naming `what`. Once handed over,
        the transaction commits or rolls back whole even if the caller is cancelled meanwhile."""
        async with self._lock:
            await self.check_file()
            try:
                return await self._on_thread(lambda conn: _atomic(conn, work))
            except sqlite3.Error as exc:
                raise StoreError(f"cannot {what}: {exc}") from exc

    async def _read_with(self, read: Callable[[sqlite3.Connection], T]) -> T:
        """`read` (statements outside any write transaction) in one handoff."""
        try:
            return await self._on_thread(read)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read from {str(self._path)!r}: {exc}") from exc

    # -- products ---------------------------------------------------------------------------------

    async def commit_page(
        self, source: str, records: Sequence[ProductRecord], now: datetime, commit: PageCommit
    ) -> UpsertCounts:
        """`upsert_products` plus the page's scan marks and progress, in one transaction."""
        latest = {record.sku: record for record in records}  # a page may repeat a sku: last wins
        changed: list[tuple[ChangeOp, ProductRecord]] | None = [] if self._changes else None
        written, at = iso(now), stamp(now)
        run, scan_id, payloads = commit.run, commit.scan_id, self._change_payloads

        def page(db: sqlite3.Connection) -> UpsertCounts:
            # The whole page in one handoff: every statement below runs on aiosqlite's thread.
            counts = upsert(
                db, source, latest, written, changed, self._still_read(db, source, latest)
            )
            if changed:
                run_id = run.run_id if run else None
                append_changes(db, source, changed, run_id, at, payloads=payloads)
            if commit.seen:  # unchanged, not sent: counted here
                counts = replace(counts, unchanged=counts.unchanged + len(commit.seen))
            if scan_id is not None and (latest or commit.seen):
                mark(db, source, scan_id, [*latest, *commit.seen])
            if scan_id is not None and commit.forget:
                db.executemany(
                    "DELETE FROM full_scan_seen WHERE source = ? AND scan_id = ? AND sku = ?",
                    [(source, scan_id, sku) for sku in commit.forget],
                )
            if commit.checkpoint is not None or commit.watermark is not None:
                set_progress(db, source, now, commit.checkpoint, commit.watermark)
            if run is not None:
                db.execute(
                    "UPDATE sync_runs SET pages = pages + 1, items_seen = items_seen + ?, "
                    "items_created = items_created + ?, items_updated = items_updated + ?, "
                    "items_unchanged = items_unchanged + ?, requests = ?, retries = ?, "
                    "rate_limited = ? WHERE id = ? AND status = 'running'",
                    (commit.arrived(len(records)), counts.created, counts.updated,
                     counts.unchanged, run.requests, run.retries, run.rate_limited, run.run_id),
                )  # fmt: skip
            return counts

        return await self._write(f"store {len(latest)} products of {source!r}", page)

    async def unseen(self, source: str, scan_id: int, skus: Sequence[str]) -> list[str]:
        """Those of `skus` that full scan `scan_id` has not marked as seen."""

        def read(db: sqlite3.Connection) -> set[str]:
            seen: set[str] = set()
            for chunk in chunks(list(skus), IN_CHUNK):
                marks = ",".join("?" * len(chunk))
                seen.update(
                    row[0]
                    for row in db.execute(
                        "SELECT sku FROM full_scan_seen WHERE source = ? AND scan_id = ? "
                        f"AND sku IN ({marks})",
                        (source, scan_id, *chunk),
                    )
                )
            return seen

        seen = await self._read_with(read)
        return [sku for sku in skus if sku not in seen]

    async def mark_seen(self, source: str, scan_id: int, skus: Sequence[str]) -> None:
        """Record `skus` as seen by scan `scan_id` (without touching their products)."""
        listed = list(skus)
        await self._write(
            f"record skus seen in {source!r}", lambda db: mark(db, source, scan_id, listed)
        )

    async def scan_view(
        self, source: str, scan_id: int, skus: Sequence[str]
    ) -> dict[str, StoredProduct]:
        """The stored products among `skus`, each with whether scan `scan_id` has marked it seen."""

        def read(db: sqlite3.Connection) -> dict[str, StoredProduct]:
            # Before the rows: a commit landing between the two then shows as a change.
            (version,) = db.execute("PRAGMA data_version").fetchone()
            writes = db.total_changes
            view: dict[str, StoredProduct] = {}
            known: Known = {}
            for chunk in chunks(list(skus), IN_CHUNK):
                marks = ",".join("?" * len(chunk))
                for sku, ident, updated, deleted, digest, seen in db.execute(
                    "SELECT p.sku, p.id, p.updated_at, p.deleted_at, p.content_hash, "
                    "s.sku IS NOT NULL FROM products p LEFT JOIN full_scan_seen s "
                    "ON s.source = p.source AND s.scan_id = ? AND s.sku = p.sku "
                    f"WHERE p.source = ? AND p.sku IN ({marks})",
                    (scan_id, source, *chunk),
                ):
                    view[sku] = StoredProduct(ident, updated, deleted is None, bool(seen), digest)
                    known[sku] = (digest, deleted)
            self._view_read = _ViewRead(source, frozenset(skus), version, writes, known)
            return view

        return await self._read_with(read)

    def _still_read(
        self, db: sqlite3.Connection, source: str, latest: dict[str, ProductRecord]
    ) -> Known | None:
        """The stored rows among `latest` as the last `scan_view` read them, if nothing was
        written since (by this connection or another), else None; in the page's transaction.

        The engine screens a page with `scan_view` and then commits it: the upsert would read
        the same rows again, a lookup per product. Taken once, the read is forgotten."""
        read, self._view_read = self._view_read, None
        if read is None or read.source != source or read.total_changes != db.total_changes:
            return None
        if not read.skus.issuperset(latest):
            return None
        (version,) = db.execute("PRAGMA data_version").fetchone()
        if version != read.data_version:
            return None
        return read.known

    async def finish_full_scan(
        self,
        source: str,
        scan_id: int,
        now: datetime,
        *,
        tombstone: bool,
        watermark: str | None,
        run_id: int | None = None,
    ) -> int:
        """End a full scan: tombstone the products it did not see (if `tombstone`), forget its
        marks, clear the checkpoint and set the watermark (CLEAR erases it); return tombstones.
        `run_id` is recorded on the `deleted` change-feed entries."""
        written, at, payloads = iso(now), stamp(now), self._change_payloads
        changes = self._changes

        def finish(db: sqlite3.Connection) -> int:
            gone: list[str] = []
            if tombstone:
                # One pass over the source's rows finds them; the feed's entries and the
                # tombstones then go by key (a pass reads every payload, and each pass more
                # cost about a twentieth of a 100k-product sync). In sku order, the index's.
                gone = [
                    sku
                    for (sku,) in db.execute(
                        "SELECT sku FROM products WHERE source = ? AND deleted_at IS NULL AND sku "
                        "NOT IN (SELECT sku FROM full_scan_seen WHERE source = ? AND scan_id = ?) "
                        "ORDER BY sku",
                        (source, source, scan_id),
                    )
                ]
                if changes:
                    append_tombstones(db, source, gone, run_id, at, payloads=payloads)
                db.executemany(
                    "UPDATE products SET deleted_at = ? WHERE source = ? AND sku = ?",
                    [(written, source, sku) for sku in gone],
                )
            db.execute("DELETE FROM full_scan_seen WHERE source = ?", (source,))
            set_progress(db, source, now, CLEAR, watermark)
            return len(gone)

        return await self._write(f"finish the full scan of {source!r}", finish)

    # -- change feed (docs/CHANGES.md) -------------------------------------------------------------

    async def changes(self, source: str, since: int, limit: int) -> list[ChangeEntry]:
        """Up to `limit` entries of `source` with seq > `since`, in seq order;
        ChangesExpiredError if retention already removed some of them."""
        try:
            return await read_changes(self._conn, source, since, limit)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read from {str(self._path)!r}: {exc}") from exc

    async def feed_heads(self) -> dict[str, FeedHead]:
        """Where each source that ever appended an entry stands."""
        try:
            return await read_heads(self._conn)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read from {str(self._path)!r}: {exc}") from exc

    async def prune_changes(self, before: datetime, sources: Sequence[str] | None = None) -> int:
        """Remove the entries older than `before` (oldest first, per source; of `sources` only
        when given); return how many."""
        removed = 0
        for head in (await self.feed_heads()).values():
            if sources is not None and head.source not in sources:
                continue
            try:
                cut = await prune_cut(self._conn, head, stamp(before))
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read from {str(self._path)!r}: {exc}") from exc
            more = cut > head.pruned_through
            while more:
                async with self._transaction(f"prune the change feed of {head.source!r}") as db:
                    count, more = await prune_chunk(db, head.source, cut)
                removed += count
        return removed

    @asynccontextmanager
    async def snapshot(self, source: str) -> AsyncIterator[ProductSnapshot]:
        """A consistent read of the live products of `source` and the seq it corresponds to."""
        self._conn  # noqa: B018 - the same misuse error as every other method
        try:
            snap = await open_snapshot(self._path, source, self._busy_timeout)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read from {str(self._path)!r}: {exc}") from exc
        try:
            yield snap
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read from {str(self._path)!r}: {exc}") from exc
        finally:
            await snap.db.close()

    # -- runs -------------------------------------------------------------------------------------

    async def start_run(
        self,
        source: str,
        kind: RunKind,
        now: datetime,
        owner: str | None = None,
    ) -> int:
        """Open a `running` row owned by `owner` (shown to operators) and return its id; the
        caller holds the source's run lock (store/locks.py), which is what keeps runs apart."""
        async with self._transaction(f"start a run of {source!r}") as db:
            cursor = await db.execute(
                "INSERT INTO sync_runs (source, kind, started_at, status, owner) "
                "VALUES (?,?,?,'running',?)",
                (source, kind, iso(now), owner),
            )
            run_id = cursor.lastrowid
        if run_id is None:
            raise StoreError(f"cannot start a run of {source!r}: no row id returned")
        return run_id

    async def fail_abandoned_runs(
        self,
        now: datetime,
        reason: str,
        *,
        source: str | None = None,
    ) -> int:
        """Mark `running` runs (of `source` only, if given) as `failed`; return how many. Only
        for a caller holding their sources' run locks: nobody else can be running them."""
        clause, params = self.dialect.where(status="running", source=source)
        # Read first: the common case (nothing to close, before every run) takes no write lock.
        if not await self._read(f"SELECT 1 FROM sync_runs {clause} LIMIT 1", params):
            return 0
        async with self._transaction("close abandoned runs") as db:
            async with db.execute(f"SELECT id FROM sync_runs {clause}", params) as cursor:
                rows = list(await cursor.fetchall())
            dead = [(iso(now), self._text(reason), r[0]) for r in rows]
            await db.executemany(
                "UPDATE sync_runs SET status='failed', finished_at=?, error=? WHERE id=?", dead
            )
            return len(dead)

    # -- history retention ([store] history_retention, store/history.py) -------------------------

    async def prune_runs(self, before: datetime) -> int:
        """Remove the runs that ended before `before`, in bounded transactions, keeping what
        readers need (store/history.py); return how many."""
        return await self._prune_history("sync_runs", prune_runs_chunk, iso(before) or "")

    async def prune_token_events(self, before: datetime) -> int:
        """Remove the token events older than `before`, in bounded transactions, keeping the
        newest of each (source, event) and tallying the rest; return how many."""
        return await self._prune_history(
            "token_events", prune_token_events_chunk, iso(before) or ""
        )

    async def _prune_history(self, table: HistoryTable, chunk: SqliteChunk, before: str) -> int:
        """`chunk` in one write transaction after another, up to the cut, so that page commits
        (which wait for the same lock) get in between."""
        cut = await self._read_with(lambda db: history_cut(db, table, before))
        removed, after, more = 0, 0, cut > 0
        while more:
            step = partial(chunk, after, cut, before)
            count, after, more = await self._write(f"prune {table}", step)
            removed += count
        return removed


def _create_private(path: Path) -> None:
    """Create an empty database file readable by its owner only, if there is none yet.

    It holds bearer tokens. SQLite would create it with the umask's mode (often 0644), and it
    gives the -wal and -shm files the mode of the database file, so this covers all three.
    An existing file keeps the mode its operator chose.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def mark(db: sqlite3.Connection, source: str, scan_id: int, skus: list[str]) -> None:
    """Mark `skus` as seen by scan `scan_id`, in the caller's transaction: one statement over
    a JSON array of them (executed once per sku, it would bind three values for each)."""
    listed = json_rows(skus)
    if listed is None:
        db.executemany(
            "INSERT OR IGNORE INTO full_scan_seen (source, scan_id, sku) VALUES (?,?,?)",
            [(source, scan_id, sku) for sku in skus],
        )
        return
    db.execute(
        "INSERT OR IGNORE INTO full_scan_seen (source, scan_id, sku) "
        "SELECT ?, ?, value FROM json_each(?)",
        (source, scan_id, listed),
    )


def _atomic(db: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    """`work` between BEGIN IMMEDIATE and COMMIT on `db` (autocommit mode), rolled back if it
    raises anything; runs on the connection's own thread."""
    db.execute("BEGIN IMMEDIATE")
    try:
        result = work(db)
        db.execute("COMMIT")
    except BaseException:
        # A failed COMMIT may already have rolled back; then ROLLBACK itself fails.
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise
    return result
