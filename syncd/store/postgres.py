"""PostgreSQL backend of the `Store` protocol: a psycopg 3 connection pool, one transaction per call.

Many processes share one database, so nothing here may rely on being alone: the schema is created
and migrated under a transaction-scoped advisory lock, and a page is one statement on an
autocommit connection (one round trip, one transaction) whose upsert rewrites only the rows whose
hash changed. The statements SQLite runs alike (runs, tokens, paces, source state) are in
statements.py.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from math import isfinite, isnan
from types import TracebackType
from typing import Any, Self

import orjson
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from syncd.errors import LeaseLostError, StoreError
from syncd.redaction import Redactor
from syncd.store.base import (
    CLEAR,
    ChangeEntry,
    FeedHead,
    PageCommit,
    ProductRecord,
    ProductSnapshot,
    RunKind,
    StoredProduct,
    UpsertCounts,
)
from syncd.store.history import HistoryTable
from syncd.store.postgres_changes import (
    FEED_RETURNING,
    FEED_RETURNING_PAYLOAD,
    ChangeListener,
    begin_snapshot,
    feed_cte,
    prune_chunk,
    prune_cut,
    read_changes,
    read_heads,
    tombstone_statement,
)
from syncd.store.postgres_history import (
    PostgresChunk,
    history_cut,
    prune_runs_chunk,
    prune_token_events_chunk,
)
from syncd.store.postgres_schema import MIGRATION_LOCK, MIGRATIONS, SCHEMA_VERSION
from syncd.store.rows import iso, parse_iso, stored_time
from syncd.store.statements import Dialect, SharedStatements

Connection = psycopg.AsyncConnection[TupleRow]

# One statement per page: the products, then (only when asked) the scan marks and the progress,
# as data-modifying CTEs of a single INSERT, so the page is atomic and costs one round trip.
# `xmax = 0` on a RETURNING row means the row was inserted, not updated; the ON CONFLICT ... WHERE
# (`_ON_CONFLICT`, left out of a page of new products: commit_page) leaves rows whose hash is
# unchanged (and that are live) untouched, so they return nothing.
# The page's small columns go as one JSON array of arrays (`_page_rows`): orjson writes it in C,
# where nine arrays cost a Python loop per element in psycopg's array dumpers. The payloads go
# beside it as one binary text[] (length-prefixed, so the server neither unescapes nor re-lexes
# them) and are parsed once each, by their own cast. Embedded in the JSON array they were parsed
# into a jsonb of the whole page and then copied out of it: 2.5-3.5 ms of server CPU a page of
# 100 products against 1.4-1.5 ms this way (the parse alone, same sitting, same pages).
_UPSERT = """
WITH page AS (
    SELECT r->>0 AS sku, (r->>1)::bigint AS id, r->>2 AS name, (r->>3)::float8 AS price,
           (r->>4)::bigint AS status, r->>5 AS type_id, r->>6 AS updated_at,
           payload, r->>7 AS content_hash
    FROM ROWS FROM (jsonb_array_elements(%(rows)s::jsonb), unnest(%(payloads)b::text[]))
         AS e(r, payload)
), written AS (
    INSERT INTO products AS p (source, sku, id, name, price, status, type_id, updated_at,
                               payload, content_hash, first_seen_at, last_synced_at)
    SELECT %(source)s, sku, id, name, price, status, type_id, updated_at, payload::jsonb,
           content_hash, %(now)s, %(now)s
    FROM page{unchanged}{conflict}
    RETURNING (xmax = 0) AS created{returning}
){extra}
SELECT count(*) FILTER (WHERE created), count(*) FILTER (WHERE NOT created),
       set_config('synchronous_commit', 'off', true)
FROM written
"""

_ON_CONFLICT = """
    ON CONFLICT (source, sku) DO UPDATE SET
        id = excluded.id, name = excluded.name, price = excluded.price,
        status = excluded.status, type_id = excluded.type_id, updated_at = excluded.updated_at,
        payload = excluded.payload, content_hash = excluded.content_hash,
        last_synced_at = excluded.last_synced_at, deleted_at = NULL
    WHERE p.content_hash <> excluded.content_hash OR p.deleted_at IS NOT NULL"""

# Rows stored with the page's hash, live, are left out before the insert: ON CONFLICT's WHERE
# would leave them as they are too, but only after parsing their payload and locking the row
# (a WAL record and a dirtied page per unchanged product). A scalar subquery, so one index probe
# a row, never hashed (a NOT EXISTS became a hash anti-join over the whole table: 240 ms a page).
# Skipped for a page the screen saw no stored row for (a first scan): nothing to find. For pages
# the screen did read, it finds nothing either (their unchanged products are not sent), but
# leaving it out there measured no difference: 3.3-4.5 ms of server CPU a page of 100 changed
# products either way, three alternated pairs of 300 pages.
_UNCHANGED = """
    WHERE (SELECT o.content_hash FROM products o
           WHERE o.source = %(source)s AND o.sku = page.sku AND o.deleted_at IS NULL)
          IS DISTINCT FROM page.content_hash"""

# Left without ON CONFLICT in a page of new products (commit_page), as the products are: a mark
# already there (a page in flight, a sku marked by a verification) fails the statement the same
# way, and the page is written again with it. The speculative insertion per mark was 0.26 of
# 4.4 ms of server CPU a first-sync page (measured before a first scan's marks became implicit:
# such pages now have none; new products of a later scan still do).
_MARK_SEEN = """, seen AS (
    INSERT INTO full_scan_seen (source, scan_id, sku)
    SELECT %(source)s, %(scan_id)s, sku FROM unnest(%(marks)b::text[]) AS m(sku){mark_conflict}
)"""
_MARK_CONFLICT = """
    ON CONFLICT DO NOTHING"""

_PROGRESS = """, progress AS (
    INSERT INTO source_state (source, updated_at, checkpoint, watermark)
    VALUES (%(source)s, %(now)s, %(checkpoint)s, %(watermark)s)
    ON CONFLICT (source) DO UPDATE SET
        updated_at = excluded.updated_at,
        checkpoint = CASE WHEN %(set_checkpoint)s THEN excluded.checkpoint
                          ELSE source_state.checkpoint END,
        watermark = CASE WHEN %(set_watermark)s THEN excluded.watermark
                         ELSE source_state.watermark END
)"""

_SYNC_OFF = "set_config('synchronous_commit', 'off', true)"
_FENCE_COLUMN = "(SELECT syncd_fence(%(fence_source)s, %(fence_owner)s, %(fence_epoch)s)::text)"

_FORGET = """, forgotten AS (
    DELETE FROM full_scan_seen
    WHERE source = %(source)s AND scan_id = %(scan_id)s AND sku = ANY(%(forget)s::text[])
)"""

# The running run's row shows its progress page by page (`syncd status`), in the page's statement.
_RUN = """, run AS (
    UPDATE sync_runs SET
        pages = pages + 1,
        items_seen = items_seen + %(arrived)s,
        items_created = items_created + (SELECT count(*) FILTER (WHERE created) FROM written),
        items_updated = items_updated + (SELECT count(*) FILTER (WHERE NOT created) FROM written),
        items_unchanged = items_unchanged + %(distinct)s - (SELECT count(*) FROM written),
        requests = %(requests)s, retries = %(retries)s, rate_limited = %(rate_limited)s
    WHERE id = %(run_id)s AND status = 'running'
)"""

_SET_PROGRESS = "WITH page AS (SELECT 1)" + _PROGRESS + " SELECT 1"

_ONLY_WHEN_ASKED = 2**62  # psycopg's prepare_threshold: prepare only on `execute(prepare=True)`

# The reads of a page's skus find each by its key, one index probe a sku, whatever the planner's
# statistics say. Statistics lag behind a source: one the last ANALYZE never saw is estimated at
# a row, and `sku = ANY(skus)` then became a filter over every row of the source (15 ms a page
# at 20k products, growing with the catalog). A LATERAL subquery with LIMIT cannot be turned
# into a join, and a scalar subquery is never hashed: both stay probes by key. The skus go in
# binary, as the page does (no escaping of each one).
SCAN_VIEW = """
SELECT k.sku, p.id, p.updated_at, p.deleted_at IS NULL,
       (SELECT true FROM full_scan_seen s
        WHERE s.source = %(source)s AND s.scan_id = %(scan)s AND s.sku = k.sku),
       p.content_hash
FROM unnest(%(skus)b::text[]) AS k(sku)
CROSS JOIN LATERAL (
    SELECT id, updated_at, deleted_at, content_hash FROM products
    WHERE source = %(source)s AND sku = k.sku LIMIT 1
) AS p"""

UNSEEN = """
SELECT k.sku FROM unnest(%(skus)b::text[]) AS k(sku)
WHERE (SELECT true FROM full_scan_seen s
       WHERE s.source = %(source)s AND s.scan_id = %(scan)s AND s.sku = k.sku) IS NULL"""


def _page_rows(records: Iterable[ProductRecord]) -> tuple[str, list[str | None]]:
    """A page's records as the JSON array of arrays `_UPSERT` reads, and their payloads."""
    # A missing payload (never made by a source) goes as NULL: the NOT NULL constraint refuses
    # it, as it refuses one in SQLite.
    rows = [
        [r.sku, r.id, r.name, _price(r.price), r.status, r.type_id, stored_time(r.updated_at),
         r.content_hash]
        for r in records
    ]  # fmt: skip
    try:
        return orjson.dumps(rows).decode(), [r.payload for r in records]
    except orjson.JSONEncodeError as exc:  # an integer past 64 bits, a lone surrogate
        raise StoreError(f"cannot encode a page for PostgreSQL: {exc}") from None


def _price(price: float | None) -> float | str | None:
    """`price` for JSON: NaN and the infinities (which JSON cannot carry) as float8's words."""
    if price is None or isfinite(price):
        return price
    return "NaN" if isnan(price) else ("Infinity" if price > 0 else "-Infinity")


def _stamp(moment: datetime | None) -> datetime | None:
    """`moment` at the precision SQLite stores (its ISO text), so filters compare alike."""
    return parse_iso(iso(moment))


def conninfo(url: str, password: str | None = None, application_name: str = "syncd") -> str:
    """The libpq connection string for `url`, with the password from the secret lookup."""
    extra: dict[str, Any] = {"application_name": application_name}
    if password is not None:
        extra["password"] = password
    return make_conninfo(url, **extra)


def describe(url: str) -> str:
    """`url` for messages: user, host, port and database only (never a password)."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        return "the PostgreSQL database"
    user = f"{params['user']}@" if params.get("user") else ""
    port = f":{params['port']}" if params.get("port") else ""
    return f"postgresql://{user}{params.get('host', '')}{port}/{params.get('dbname', '')}"


class PostgresStore(SharedStatements):
    """The daemon's database on PostgreSQL; use as `async with PostgresStore(url) as store:`."""

    dialect = Dialect("%s", _stamp, lambda moment: moment, iso, array_any=True)

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        pool_size: int = 4,
        connect_timeout: float = 10.0,
        redactor: Redactor | None = None,
        idle_in_transaction: float | None = None,
        changes: bool = True,
        change_payloads: bool = False,
    ) -> None:
        self._url = url
        # A replica stopped inside a transaction (SIGSTOP, a partition) would keep its fence's
        # share lock on the lease row, and so the source, for as long as it is stopped: the
        # server ends such a session after this many seconds, so that a takeover can proceed.
        self._idle_in_transaction = idle_in_transaction
        self._changes = changes  # append to the change feed (docs/CHANGES.md)
        self._change_payloads = change_payloads  # copy payloads into it, not just refer to them
        self._redactor = redactor or Redactor()
        self._conninfo = conninfo(url, password)
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout
        self._pool: AsyncConnectionPool[Connection] | None = None
        self._closed = False
        self._fence: tuple[str, str, int] | None = None
        # Sources a plain insert of a new-looking page collided in (commit_page); shared by the
        # fenced views, bounded by the configured sources.
        self._conflicted: set[str] = set()
        # Page commits a full scan may keep in flight (syncd/commit_window.py): each on its own
        # pooled connection, run in parallel by the server; one connection is left for reads.
        self.commit_depth = max(1, min(3, pool_size - 1))

    def fenced(self, source: str, owner: str, epoch: int) -> Self:
        """A view of this open store (same pool) whose writes of a run each check, in their own
        transaction, that (`owner`, `epoch`) still holds the lease of `source`: LeaseLostError
        otherwise (store/postgres_leases.py)."""
        view = copy.copy(self)
        view._fence = (source, owner, epoch)
        return view

    async def _check_fence(self, db: Connection) -> None:
        """Refuse the transaction unless this view's lease is still held (no-op if unfenced);
        the lease row stays share-locked until the transaction ends, so no claim can slip in."""
        if self._fence is not None:
            await db.execute("SELECT syncd_fence(%s, %s, %s)", self._fence)

    def _text(self, text: str | None) -> str | None:
        """Free text on its way to a column: an echoed credential becomes its fingerprint."""
        return None if text is None else self._redactor.redact(text)

    @property
    def url(self) -> str:
        """The database, for messages (no password)."""
        return describe(self._url)

    @property
    def conninfo(self) -> str:
        """The connection string (with the password: never log it); for run locks and COPY."""
        return self._conninfo

    async def __aenter__(self) -> Self:
        if self._closed or self._pool is not None:
            raise RuntimeError("PostgresStore cannot be reopened; create a new PostgresStore")
        self._closed = True  # until the pool is open: a failed open cannot be retried
        utc = "-c timezone=UTC"
        if self._idle_in_transaction is not None:
            limit = max(1, round(self._idle_in_transaction * 1000))
            utc += f" -c idle_in_transaction_session_timeout={limit}"
        try:
            # One connection first, for the schema: an unreachable server or a refused login is
            # reported at once with libpq's reason, not as a pool timeout after retries.
            async with await psycopg.AsyncConnection.connect(
                self._conninfo,
                autocommit=True,
                options=utc,
                connect_timeout=max(2, round(self._connect_timeout)),
            ) as first:
                await self._migrate(first)
        except psycopg.Error as exc:
            raise StoreError(f"cannot open database {self.url}: {first_line(exc)}") from exc
        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=self._pool_size,
            # No statement is prepared but the page's (`_write_page`): after five runs of a
            # prepared statement PostgreSQL may keep a generic plan, costed for the tables as
            # they were then. `full_scan_seen` is emptied after every scan (vacuum truncates it
            # to no pages), so a plan made as the next scan starts reads it by seq scan, once per
            # row of `scan_view`, while the scan fills it with a catalog's marks: a daemon's
            # second full sync of 20k products took 15-18 s instead of 0.7. Planned each time,
            # a statement sees the tables as they are; that costs well under a millisecond.
            # (psycopg's `prepare_threshold=None` would refuse even `prepare=True`: a threshold
            # never reached leaves preparing to the one statement that asks.)
            kwargs={"autocommit": True, "options": utc, "prepare_threshold": _ONLY_WHEN_ASKED},
            open=False,
            timeout=self._connect_timeout,
        )
        try:
            await pool.open(wait=True, timeout=self._connect_timeout)
        except BaseException as exc:
            await pool.close()
            if isinstance(exc, psycopg.Error):
                raise StoreError(f"cannot open database {self.url}: {first_line(exc)}") from exc
            raise
        self._pool, self._closed = pool, False
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closed = True
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def _migrate(self, db: Connection) -> None:
        # Every replica may start at once: the advisory lock makes them take turns, and the one
        # after the first finds the schema current. It is released with the transaction.
        async with db.transaction():
            await db.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            await db.execute("CREATE TABLE IF NOT EXISTS syncd_schema (version integer NOT NULL)")
            row = await (await db.execute("SELECT max(version) FROM syncd_schema")).fetchone()
            version = int(row[0]) if row and row[0] is not None else 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"database {self.url} has schema {version}, newer than this syncd "
                    f"({SCHEMA_VERSION}); upgrade syncd"
                )
            for number in range(version + 1, SCHEMA_VERSION + 1):
                await db.execute(MIGRATIONS[number - 1])
            if version < SCHEMA_VERSION:
                await db.execute("DELETE FROM syncd_schema")
                await db.execute("INSERT INTO syncd_schema VALUES (%s)", (SCHEMA_VERSION,))

    @property
    def _opened(self) -> AsyncConnectionPool[Connection]:
        if self._pool is None:
            raise RuntimeError(
                "PostgresStore is not open; use it inside 'async with PostgresStore(...)'"
            )
        return self._pool

    @asynccontextmanager
    async def _transaction(self, what: str) -> AsyncIterator[Connection]:
        """One transaction on a pooled connection; psycopg errors become StoreError naming `what`."""
        try:
            async with self._opened.connection() as db, db.transaction():
                await self._check_fence(db)
                yield db
        except psycopg.Error as exc:
            raise _error(f"cannot {what}", exc) from exc

    @asynccontextmanager
    async def session(self, what: str) -> AsyncIterator[Connection]:
        """One unfenced transaction on a pooled connection, for the lease tables; psycopg errors
        become StoreError naming `what`."""
        try:
            async with self._opened.connection() as db, db.transaction():
                yield db
        except psycopg.Error as exc:
            raise StoreError(f"cannot {what}: {first_line(exc)}") from exc

    async def fetch(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read-only query (for the lease tables)."""
        return await self._read(query, params)

    async def check_file(self) -> None:
        """StoreError if the server cannot be reached: PostgreSQL owns its storage, so there is no
        file to compare, but a probe (`/readyz`) must still see a database that is gone."""
        await self._read("SELECT 1")

    async def _read(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[tuple[Any, ...]]:
        """Rows of one read (StoreError if it fails)."""
        try:
            async with self._opened.connection() as db:
                cursor = await db.execute(sql, params)
                return await cursor.fetchall()
        except psycopg.Error as exc:
            raise StoreError(f"cannot read from {self.url}: {first_line(exc)}") from exc

    async def _execute(self, what: str, sql: str, params: Sequence[Any]) -> int:
        """One statement in a transaction of its own (fenced, for a fenced view); the rows it
        changed."""
        async with self._transaction(what) as db:
            cursor = await db.execute(sql, params)
            return cursor.rowcount

    # -- products ---------------------------------------------------------------------------------

    def _page_statement(
        self,
        source: str,
        records: Sequence[ProductRecord],
        latest: dict[str, ProductRecord],
        now: datetime,
        commit: PageCommit,
        plain: bool = False,
    ) -> tuple[str, dict[str, Any]]:
        """The one statement that writes a page (and what goes with it), and its parameters;
        `plain` inserts the products without ON CONFLICT (a conflict then fails the statement)."""
        progress = commit.checkpoint is not None or commit.watermark is not None
        rows, payloads = _page_rows(latest.values())
        params: dict[str, Any] = {
            "source": source,
            "now": _stamp(now),
            "rows": rows,
            "payloads": payloads,
            "scan_id": commit.scan_id,
            "checkpoint": commit.checkpoint or None,
            "watermark": commit.watermark or None,
            "set_checkpoint": commit.checkpoint is not None,
            "set_watermark": commit.watermark is not None,
            "forget": list(commit.forget),
            "marks": [*latest, *commit.seen],
            "arrived": commit.arrived(len(records)),
            "distinct": len(latest) + len(commit.seen),
            "feed_run": commit.run.run_id if commit.run else None,
        }
        run = commit.run
        if run is not None:
            params |= {
                "run_id": run.run_id,
                "requests": run.requests,
                "retries": run.retries,
                "rate_limited": run.rate_limited,
            }
        extra = "".join(
            (
                _MARK_SEEN if commit.scan_id is not None else "",
                _FORGET if commit.scan_id is not None and commit.forget else "",
                _PROGRESS if progress else "",
                _RUN if run is not None else "",
                feed_cte(self._change_payloads) if self._changes and latest else "",
            )
        )
        returning = ""
        if self._changes and latest:
            returning = FEED_RETURNING_PAYLOAD if self._change_payloads else FEED_RETURNING
        query = _UPSERT.replace("{extra}", extra).replace("{returning}", returning)
        query = query.replace("{unchanged}", "" if commit.new else _UNCHANGED)
        query = query.replace("{conflict}", "" if plain else _ON_CONFLICT)
        query = query.replace("{mark_conflict}", "" if plain else _MARK_CONFLICT)
        if self._fence is not None:
            # The fence in the page's own statement: the one-row aggregate evaluates it once, and
            # a refusal rolls the whole statement back (the lease row stays share-locked until it
            # commits, so no claim can slip in between).
            query = query.replace(_SYNC_OFF, _SYNC_OFF + ", " + _FENCE_COLUMN)
            params |= dict(
                zip(("fence_source", "fence_owner", "fence_epoch"), self._fence, strict=True)
            )
        return query, params

    async def commit_page(
        self, source: str, records: Sequence[ProductRecord], now: datetime, commit: PageCommit
    ) -> UpsertCounts:
        """`upsert_products` plus the page's scan marks and progress, in one statement."""
        latest = {record.sku: record for record in records}  # a page may repeat a sku: last wins
        progress = commit.checkpoint is not None or commit.watermark is not None
        marks = bool(commit.seen) and commit.scan_id is not None
        if not (latest or progress or commit.forget or marks or commit.run):
            return UpsertCounts(unchanged=len(commit.seen))
        # A page of products none of which has a live row is inserted without ON CONFLICT: a
        # speculative insertion per row (an index probe, a token, a confirmation record) was 0.5
        # of 3.3 ms of server CPU a page. A dead row under one of its skus (a revival), or the
        # hint being wrong, fails the statement with nothing written: the page is written again
        # with ON CONFLICT, and the source's later pages are too (revivals come in runs).
        plain = commit.new and source not in self._conflicted
        try:
            try:
                return await self._write_page(
                    *self._page_statement(source, records, latest, now, commit, plain)
                )
            except psycopg.errors.UniqueViolation:
                if not plain:
                    raise
            self._conflicted.add(source)
            return await self._write_page(
                *self._page_statement(source, records, latest, now, commit, False)
            )
        except psycopg.Error as exc:
            raise _error(f"cannot store {len(latest)} products of {source!r}", exc) from exc
        except UnicodeEncodeError as exc:  # a lone surrogate in a payload, met by psycopg's dump
            raise StoreError(f"cannot encode a page for PostgreSQL: {exc.reason}") from None

    async def _write_page(self, query: str, params: dict[str, Any]) -> UpsertCounts:
        """Run one page's statement and parameters (`_page_statement`); psycopg's errors
        raised."""
        # One statement on an autocommit connection: its own transaction, one round trip,
        # committed by the server as soon as it ends. No BEGIN/COMMIT from the client, so
        # the rows every page locks (the counter, the checkpoint, the run) are never held
        # while the client is waiting to be scheduled: commits in flight together
        # (syncd/commit_window.py) would queue behind that. The statement's
        # `set_config('synchronous_commit', 'off', true)` lasts for its transaction: a page
        # need not wait for its WAL flush, as SQLite's synchronous=NORMAL does not (a server
        # crash may lose the last pages with their checkpoint, never one without the other,
        # and the scan resumes before them). Tokens and runs keep the durable default.
        async with self._opened.connection() as db:
            # Prepared, unlike every other statement (see the pool's settings): planning it
            # is a tenth of the page's server time. Its one stale-plan risk is a probe of
            # `products` planned while the table was nearly empty; but a first scan's pages
            # (the plain insert) evaluate none, and filling the table makes autovacuum ANALYZE
            # it, which replaces the plan.
            cursor = await db.execute(query, params, prepare=True)
            row = await cursor.fetchone()
        created, updated = (int(row[0]), int(row[1])) if row else (0, 0)
        # `distinct` counts the page's unchanged skus too, sent or not (`PageCommit.seen`).
        return UpsertCounts(created, updated, params["distinct"] - created - updated)

    async def scan_view(
        self, source: str, scan_id: int, skus: Sequence[str]
    ) -> dict[str, StoredProduct]:
        """The stored products among `skus`, each with whether scan `scan_id` has marked it seen."""
        rows = await self._read(SCAN_VIEW, {"source": source, "scan": scan_id, "skus": list(skus)})
        return {
            sku: StoredProduct(ident, updated, bool(live), bool(seen), digest)
            for sku, ident, updated, live, seen, digest in rows
        }

    async def unseen(self, source: str, scan_id: int, skus: Sequence[str]) -> list[str]:
        """Those of `skus` that full scan `scan_id` has not marked as seen."""
        rows = await self._read(UNSEEN, {"source": source, "scan": scan_id, "skus": list(skus)})
        missing = {row[0] for row in rows}
        return [sku for sku in skus if sku in missing]

    async def mark_seen(self, source: str, scan_id: int, skus: Sequence[str]) -> None:
        """Record `skus` as seen by scan `scan_id` (without touching their products)."""
        async with self._transaction(f"record skus seen in {source!r}") as db:
            await db.execute(
                "INSERT INTO full_scan_seen (source, scan_id, sku) "
                "SELECT %s, %s, sku FROM unnest(%s::text[]) AS t(sku) ON CONFLICT DO NOTHING",
                (source, scan_id, list(skus)),
            )

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
        async with self._transaction(f"finish the full scan of {source!r}") as db:
            deleted = 0
            if tombstone:
                cursor = await db.execute(
                    tombstone_statement(self._changes, self._change_payloads),
                    {"now": _stamp(now), "source": source, "scan": scan_id, "feed_run": run_id},
                )
                row = await cursor.fetchone()
                deleted = int(row[0]) if row else 0
            await db.execute("DELETE FROM full_scan_seen WHERE source = %s", (source,))
            await _set_progress(db, source, now, CLEAR, watermark)
        return deleted

    # -- change feed (docs/CHANGES.md) -------------------------------------------------------------

    async def changes(self, source: str, since: int, limit: int) -> list[ChangeEntry]:
        """Up to `limit` entries of `source` with seq > `since`, in seq order;
        ChangesExpiredError if retention already removed some of them."""
        try:
            async with self._opened.connection() as db:
                return await read_changes(db, source, since, limit)
        except psycopg.Error as exc:
            raise StoreError(f"cannot read from {self.url}: {first_line(exc)}") from exc

    async def feed_heads(self) -> dict[str, FeedHead]:
        """Where each source that ever appended an entry stands."""
        try:
            async with self._opened.connection() as db:
                return await read_heads(db)
        except psycopg.Error as exc:
            raise StoreError(f"cannot read from {self.url}: {first_line(exc)}") from exc

    async def prune_changes(self, before: datetime, sources: Sequence[str] | None = None) -> int:
        """Remove the entries older than `before` (oldest first, per source, in chunks: a long
        delete must not hold the counter row the pages update; of `sources` only when given);
        return how many."""
        removed = 0
        moment = _stamp(before)
        for head in (await self.feed_heads()).values():
            if sources is not None and head.source not in sources:
                continue
            try:
                async with self._opened.connection() as db:
                    cut = await prune_cut(db, head, moment or before)
            except psycopg.Error as exc:
                raise StoreError(f"cannot read from {self.url}: {first_line(exc)}") from exc
            more = cut > head.pruned_through
            while more:
                async with self._transaction(f"prune the change feed of {head.source!r}") as db:
                    count, more = await prune_chunk(db, head.source, cut)
                removed += count
        return removed

    @asynccontextmanager
    async def snapshot(self, source: str) -> AsyncIterator[ProductSnapshot]:
        """A consistent read of the live products of `source` and the seq it corresponds to."""
        try:
            async with self._opened.connection() as db:
                snap = await begin_snapshot(db, source)
                try:
                    yield snap
                finally:
                    await db.execute("ROLLBACK")  # read only: nothing to keep
        except psycopg.Error as exc:
            raise StoreError(f"cannot read from {self.url}: {first_line(exc)}") from exc

    def listener(self) -> ChangeListener:
        """A LISTEN connection woken by each page that appends entries (`syncd changes
        --follow`); not opened yet."""
        self._opened  # noqa: B018 - the same misuse error as every other method
        return ChangeListener(self._conninfo, self._connect_timeout)

    # -- runs -------------------------------------------------------------------------------------

    async def start_run(
        self,
        source: str,
        kind: RunKind,
        now: datetime,
        owner: str | None = None,
    ) -> int:
        """Open a `running` row owned by `owner` (shown to operators) and return its id; the
        caller holds the source's run lock (store/pglocks.py), which is what keeps runs apart."""
        async with self._transaction(f"start a run of {source!r}") as db:
            cursor = await db.execute(
                "INSERT INTO sync_runs (source, kind, started_at, status, owner) "
                "VALUES (%s, %s, %s, 'running', %s) RETURNING id",
                (source, kind, _stamp(now), owner),
            )
            row = await cursor.fetchone()
        if row is None:
            raise StoreError(f"cannot start a run of {source!r}: no row id returned")
        return int(row[0])

    async def fail_abandoned_runs(
        self,
        now: datetime,
        reason: str,
        *,
        source: str | None = None,
    ) -> int:
        """Mark `running` runs (of `source` only, if given) as `failed`; return how many. Only
        for a caller holding their sources' run locks: nobody else can be running them."""
        async with self._transaction("close abandoned runs") as db:
            cursor = await db.execute(
                "UPDATE sync_runs SET status = 'failed', finished_at = %s, error = %s "
                "WHERE status = 'running' AND (%s::text IS NULL OR source = %s)",
                (_stamp(now), self._text(reason), source, source),
            )
            return cursor.rowcount

    # -- history retention ([store] history_retention, store/history.py) -------------------------

    async def prune_runs(self, before: datetime) -> int:
        """Remove the runs that ended before `before`, in bounded transactions, keeping what
        readers need (store/history.py); return how many."""
        return await self._prune_history("sync_runs", prune_runs_chunk, before)

    async def prune_token_events(self, before: datetime) -> int:
        """Remove the token events older than `before`, in bounded transactions, keeping the
        newest of each (source, event) and tallying the rest; return how many."""
        return await self._prune_history("token_events", prune_token_events_chunk, before)

    async def _prune_history(
        self, table: HistoryTable, chunk: PostgresChunk, before: datetime
    ) -> int:
        """`chunk` in one transaction after another, up to the cut: no long delete holds locks
        or bloats one transaction, and page commits run in between."""
        moment = _stamp(before) or before
        try:
            async with self._opened.connection() as db:
                cut = await history_cut(db, table, moment)
        except psycopg.Error as exc:
            raise StoreError(f"cannot read from {self.url}: {first_line(exc)}") from exc
        removed, after, more = 0, 0, cut > 0
        while more:
            async with self._transaction(f"prune {table}") as db:
                count, after, more = await chunk(db, after, cut, moment)
            removed += count
        return removed


async def _set_progress(
    db: Connection, source: str, now: datetime, checkpoint: str | None, watermark: str | None
) -> None:
    """Write the non-None of checkpoint / watermark (CLEAR stores NULL)."""
    await db.execute(
        _SET_PROGRESS,
        {
            "source": source,
            "now": _stamp(now),
            "checkpoint": checkpoint or None,
            "watermark": watermark or None,
            "set_checkpoint": checkpoint is not None,
            "set_watermark": watermark is not None,
        },
    )


FENCE_REFUSED = "SY001"
"""SQLSTATE raised by `syncd_fence` (postgres_schema.py, migration 2)."""


def _error(what: str, exc: psycopg.Error) -> StoreError:
    """`exc` as one line after `what`: LeaseLostError if the run's fence refused the write."""
    if exc.sqlstate == FENCE_REFUSED:
        return LeaseLostError(f"{what}: {first_line(exc)}")
    return StoreError(f"{what}: {first_line(exc)}")


def first_line(exc: BaseException) -> str:
    """A driver error as one line (libpq adds DETAIL/HINT lines)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
