"""What the two SQL backends run alike: one text per statement, whichever database runs it.

The runs, token, pace and state statements read and write the same columns in SQLite and in
PostgreSQL; only the placeholder and how a moment is bound and read back differ (ISO text in
SQLite, `timestamptz` in PostgreSQL). `SharedStatements` holds each of them once, written with
`?` placeholders, and a backend supplies its `Dialect`, a read, and a one-statement write. What
a backend does its own way (a page's write, the scan marks, the feed, run start, pruning) stays
in its module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, cast

from syncd.store.base import (
    CallWindowState,
    PageCommit,
    ProductRecord,
    RateSearch,
    RunRecord,
    RunStatus,
    RunTotals,
    SourceRate,
    SourceState,
    TokenEvent,
    TokenRecord,
    TokenState,
    UpsertCounts,
)
from syncd.store.rows import RUN_COLUMNS


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one backend binds and reads what the shared statements pass."""

    placeholder: str
    bind_time: Callable[[datetime | None], Any]
    """A moment as a bound parameter."""
    read_time: Callable[[Any], datetime | None]
    """A stored moment back as a datetime."""
    time_text: Callable[[Any], str | None]
    """A stored moment as the ISO text `RunRecord` carries."""
    array_any: bool
    """`= ANY(?)` with one array parameter for a list, where `IN (?, ...)` needs one each."""

    def sql(self, text: str) -> str:
        """`text`, written with `?` placeholders, in this backend's."""
        if self.placeholder == "?":
            return text
        if "%" in text:
            # psycopg reads `%` as the start of a placeholder: a shared statement has none.
            raise ValueError(f"a shared statement may not contain '%': {text[:60]!r}")
        return text.replace("?", self.placeholder)

    def where(self, **conditions: Any) -> tuple[str, list[Any]]:
        """A WHERE clause (with `?` placeholders) over the non-None conditions: equality, `>=`
        for a datetime (since), any of the values for a list or tuple. Column names are fixed by
        the callers."""
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in conditions.items():
            if value is None:
                continue
            if isinstance(value, datetime):
                clauses.append(f"{column} >= ?")
                params.append(self.bind_time(value))
            elif isinstance(value, list | tuple) and self.array_any:
                clauses.append(f"{column} = ANY(?)")
                params.append(list(value))
            elif isinstance(value, list | tuple):
                clauses.append(f"{column} IN ({', '.join('?' * len(value))})")
                params.extend(value)
            else:
                clauses.append(f"{column} = ?")
                params.append(value)
        return ("WHERE " + " AND ".join(clauses) if clauses else ""), params

    def run(self, row: Sequence[Any]) -> RunRecord:
        """A `sync_runs` row (selected as RUN_COLUMNS) as a record."""
        return RunRecord(
            id=int(row[0]),
            source=row[1],
            kind=row[2],
            started_at=cast(str, self.time_text(row[3])),
            finished_at=self.time_text(row[4]),
            status=row[5],
            totals=RunTotals(*(int(v) for v in row[6:15])),
            error=row[15],
        )

    def moment(self, value: Any) -> datetime:
        """A stored moment of a NOT NULL column."""
        return cast(datetime, self.read_time(value))


class SharedStatements(ABC):
    """The `Store` methods both SQL backends implement with the same statements."""

    dialect: ClassVar[Dialect]

    @abstractmethod
    async def _read(self, sql: str, params: Sequence[Any] = ()) -> Sequence[Any]:
        """The rows of one read (in the backend's own placeholders)."""

    @abstractmethod
    async def _execute(self, what: str, sql: str, params: Sequence[Any]) -> int:
        """One statement (in the backend's own placeholders) in a write transaction of its own;
        the rows it changed. The backend's errors become StoreError naming `what`."""

    @abstractmethod
    def _text(self, text: str | None) -> str | None:
        """Free text on its way to a column, with every registered secret redacted."""

    @abstractmethod
    async def commit_page(
        self, source: str, records: Sequence[ProductRecord], now: datetime, commit: PageCommit
    ) -> UpsertCounts:
        """Write a page of products with what goes with it, in one transaction."""

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> Sequence[Any]:
        return await self._read(self.dialect.sql(sql), params)

    async def _row(self, sql: str, params: Sequence[Any] = ()) -> Sequence[Any] | None:
        """The first row of one read (`?` placeholders); None when there is none."""
        rows = await self._rows(sql, params)
        return rows[0] if rows else None

    async def _change(self, what: str, sql: str, params: Sequence[Any]) -> int:
        return await self._execute(what, self.dialect.sql(sql), params)

    # -- products ---------------------------------------------------------------------------------

    async def upsert_products(
        self, source: str, records: Sequence[ProductRecord], now: datetime
    ) -> UpsertCounts:
        """Insert new products, rewrite changed ones, leave identical ones untouched."""
        return await self.commit_page(source, records, now, PageCommit())

    async def count_seen(self, source: str, scan_id: int) -> int:
        """How many distinct skus scan `scan_id` has marked as seen."""
        row = await self._row(
            "SELECT count(*) FROM full_scan_seen WHERE source = ? AND scan_id = ?",
            (source, scan_id),
        )
        return int(row[0]) if row else 0

    async def mark_live_seen(self, source: str, scan_id: int) -> int:
        """Mark every live product of `source` as seen by scan `scan_id`; the marks added."""
        # The WHERE is also what lets SQLite read ON CONFLICT as the upsert clause of an
        # INSERT ... SELECT, not as part of the SELECT.
        return await self._change(
            f"mark the live products of {source!r} seen",
            "INSERT INTO full_scan_seen (source, scan_id, sku) SELECT source, ?, sku "
            "FROM products WHERE source = ? AND deleted_at IS NULL ON CONFLICT DO NOTHING",
            (scan_id, source),
        )

    async def count_products(self, source: str) -> int:
        """How many live (not tombstoned) products `source` has."""
        row = await self._row(
            "SELECT count(*) FROM products WHERE source = ? AND deleted_at IS NULL", (source,)
        )
        return int(row[0]) if row else 0

    async def has_products(self, source: str) -> bool:
        """Whether `source` has a live (not tombstoned) product: stops at the first one."""
        row = await self._row(
            "SELECT EXISTS (SELECT 1 FROM products WHERE source = ? AND deleted_at IS NULL)",
            (source,),
        )
        return bool(row and row[0])

    # -- webhook cursors (docs/CHANGES.md) ---------------------------------------------------------

    async def webhook_cursors(self, webhook: str) -> dict[str, int]:
        """source -> the last seq webhook `webhook` delivered (sources never delivered absent)."""
        rows = await self._rows(
            "SELECT source, seq FROM webhook_cursors WHERE webhook = ?", (webhook,)
        )
        return {r[0]: int(r[1]) for r in rows}

    async def set_webhook_cursor(self, webhook: str, source: str, seq: int, now: datetime) -> None:
        """Record that `webhook` delivered every entry of `source` up to `seq`."""
        await self._change(
            f"record what webhook {webhook!r} delivered",
            "INSERT INTO webhook_cursors (webhook, source, seq, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (webhook, source) DO UPDATE SET seq = excluded.seq, "
            "updated_at = excluded.updated_at",
            (webhook, source, seq, self.dialect.bind_time(now)),
        )

    # -- runs -------------------------------------------------------------------------------------

    async def finish_run(
        self,
        run_id: int,
        status: RunStatus,
        totals: RunTotals,
        now: datetime,
        error: str | None = None,
    ) -> None:
        """Close a run with its outcome and counters."""
        t = totals
        await self._change(
            f"finish run {run_id}",
            "UPDATE sync_runs SET finished_at=?, status=?, pages=?, items_seen=?, "
            "items_created=?, items_updated=?, items_unchanged=?, items_deleted=?, requests=?, "
            "retries=?, rate_limited=?, error=? WHERE id=?",
            (self.dialect.bind_time(now), status, t.pages, t.items_seen, t.items_created,
             t.items_updated, t.items_unchanged, t.items_deleted, t.requests, t.retries,
             t.rate_limited, self._text(error), run_id),
        )  # fmt: skip

    async def running_sources(self) -> list[str]:
        """The sources that have a run still marked `running`, sorted."""
        rows = await self._rows(
            "SELECT DISTINCT source FROM sync_runs WHERE status = 'running' ORDER BY source"
        )
        return [str(row[0]) for row in rows]

    async def last_runs(self) -> list[RunRecord]:
        """The most recent run of each source."""
        rows = await self._rows(
            f"SELECT {RUN_COLUMNS} FROM sync_runs WHERE id IN "
            "(SELECT max(id) FROM sync_runs GROUP BY source) ORDER BY source"
        )
        return [self.dialect.run(row) for row in rows]

    async def runs(
        self,
        source: str | None = None,
        status: RunStatus | None = None,
        since: datetime | None = None,
        limit: int = 50,
    ) -> list[RunRecord]:
        """Runs, newest first, filtered."""
        clause, params = self.dialect.where(source=source, status=status, started_at=since)
        rows = await self._rows(
            f"SELECT {RUN_COLUMNS} FROM sync_runs {clause} ORDER BY id DESC LIMIT ?",
            (*params, limit),
        )
        return [self.dialect.run(row) for row in rows]

    # -- tokens -----------------------------------------------------------------------------------

    async def add_token_event(self, event: TokenEvent) -> None:
        """Append to `token_events`."""
        at = self.dialect.bind_time
        await self._change(
            f"record token event {event.event!r}",
            "INSERT INTO token_events (source, at, event, expires_at, fingerprint, detail, "
            "owner) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (event.source, at(event.at), event.event, at(event.expires_at), event.fingerprint,
             self._text(event.detail), event.owner),
        )  # fmt: skip

    async def token_events(
        self,
        source: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        *,
        event: str | Sequence[str] | None = None,
    ) -> list[TokenEvent]:
        """Token events, newest first, filtered; `event` keeps only that kind (or those kinds)."""
        kinds = None if event is None else [event] if isinstance(event, str) else list(event)
        clause, params = self.dialect.where(source=source, at=since, event=kinds)
        rows = await self._rows(
            "SELECT source, at, event, expires_at, fingerprint, detail, owner FROM token_events "
            f"{clause} ORDER BY id DESC LIMIT ?",
            (*params, limit),
        )
        d = self.dialect
        return [
            TokenEvent(source=r[0], at=d.moment(r[1]), event=r[2], expires_at=d.read_time(r[3]),
                       fingerprint=r[4], detail=r[5], owner=r[6])
            for r in rows
        ]  # fmt: skip

    async def token_event_counts(self) -> dict[tuple[str, str], int]:
        """How many token events of each (source, event) were ever recorded."""
        rows = await self._rows(
            "SELECT source, event, count(*) FROM token_events GROUP BY source, event"
        )
        counts = {(r[0], r[1]): int(r[2]) for r in rows}
        for r in await self._rows("SELECT source, event, pruned FROM token_event_tallies"):
            counts[r[0], r[1]] = counts.get((r[0], r[1]), 0) + int(r[2])  # pruned by retention
        return counts

    async def load_token(self, key: str) -> TokenRecord | None:
        """The persisted credential for cache key `key` (None also for a row holding only a
        first refresh's intent)."""
        state = await self.token_state(key)
        return None if state is None else state.token

    async def save_token(self, key: str, token: TokenRecord, now: datetime) -> None:
        """Persist (replace) the credential for `key` atomically."""
        at = self.dialect.bind_time
        await self._change(
            "save a token",
            "INSERT INTO tokens (cache_key, access_token, refresh_token, expires_at, issued_at, "
            "updated_at, version) VALUES (?, ?, ?, ?, ?, ?, 1) ON CONFLICT (cache_key) "
            "DO UPDATE SET access_token=excluded.access_token, "
            "refresh_token=excluded.refresh_token, expires_at=excluded.expires_at, "
            "issued_at=excluded.issued_at, updated_at=excluded.updated_at, "
            "version=tokens.version + 1, refreshing_by=NULL, refresh_started_at=NULL",
            (key, token.access_token, token.refresh_token, at(token.expires_at),
             at(token.issued_at), at(now)),
        )  # fmt: skip

    async def delete_token(self, key: str) -> None:
        """Forget the credential for `key`."""
        await self._change("delete a token", "DELETE FROM tokens WHERE cache_key = ?", (key,))

    # -- tokens shared by replicas (docs/SCALING.md) ----------------------------------------------

    async def token_state(self, key: str) -> TokenState | None:
        """The row of `key` with its version and refresh intent (None: no row at all)."""
        r = await self._row(
            "SELECT access_token, expires_at, refresh_token, issued_at, version, refreshing_by, "
            "refresh_started_at FROM tokens WHERE cache_key = ?",
            (key,),
        )
        if r is None:
            return None
        d = self.dialect
        token = TokenRecord(r[0], d.read_time(r[1]), r[2], d.read_time(r[3])) if r[0] else None
        return TokenState(token, int(r[4]), r[5], d.read_time(r[6]))

    async def begin_token_refresh(
        self, key: str, expected_version: int, owner: str, now: datetime, stale_before: datetime
    ) -> bool:
        """Record that `owner` refreshes `key` if the row is still at `expected_version` and
        holds no live intent; True if it did. One statement: SQLite's write lock, or the row
        lock in PostgreSQL (the loser's WHERE sees the winner's version), makes it a
        compare-and-set between processes."""
        at = self.dialect.bind_time
        # No row yet (a first token): a placeholder carries the intent; '' is no token.
        changed = await self._change(
            "begin a token refresh",
            "INSERT INTO tokens (cache_key, access_token, updated_at, version, refreshing_by, "
            "refresh_started_at) VALUES (?, '', ?, 1, ?, ?) ON CONFLICT (cache_key) DO UPDATE "
            "SET version = tokens.version + 1, refreshing_by = excluded.refreshing_by, "
            "refresh_started_at = excluded.refresh_started_at, updated_at = excluded.updated_at "
            "WHERE tokens.version = ? AND (tokens.refreshing_by IS NULL "
            "OR tokens.refresh_started_at < ?)",
            (key, at(now), owner, at(now), expected_version, at(stale_before)),
        )
        return changed == 1

    async def abandon_token_refresh(
        self, key: str, owner: str, now: datetime, *, spent: bool = False
    ) -> None:
        """Drop `owner`'s refresh intent on `key`; `spent` also drops the refresh token."""
        await self._change(
            "abandon a token refresh",
            "UPDATE tokens SET version = version + 1, refreshing_by = NULL, "
            "refresh_started_at = NULL, updated_at = ?, "
            "refresh_token = CASE WHEN ? THEN NULL ELSE refresh_token END "
            "WHERE cache_key = ? AND refreshing_by = ?",
            (self.dialect.bind_time(now), spent, key, owner),
        )

    async def revoke_token(self, key: str, access_token: str, now: datetime) -> bool:
        """Expire `key`'s token now if it is still `access_token`; True if it was."""
        moment = self.dialect.bind_time(now)
        changed = await self._change(
            "revoke a token",
            "UPDATE tokens SET expires_at = ?, version = version + 1, updated_at = ? "
            "WHERE cache_key = ? AND access_token = ?",
            (moment, moment, key, access_token),
        )
        return changed == 1

    # -- source rates -----------------------------------------------------------------------------

    async def source_rate(self, source: str) -> SourceRate | None:
        """The persisted pace of `source` (None: never saved)."""
        r = await self._row(
            "SELECT rate, paused_until, updated_at, window_ends_at, window_limit, window_calls, "
            "window_phase_width, found_lower, found_upper, found_burst, found_held "
            "FROM source_rates WHERE source = ?",
            (source,),
        )
        if r is None:
            return None
        d = self.dialect
        ends_at = d.read_time(r[3])
        window = None if ends_at is None else CallWindowState(ends_at, r[4], r[5], r[6])
        found = None
        if r[7] is not None and r[8] is not None:
            found = RateSearch(r[7], r[8], r[9], r[10] or 0.0)
        return SourceRate(source, r[0], d.read_time(r[1]), d.moment(r[2]), window, found)

    async def save_source_rate(self, rate: SourceRate) -> None:
        """Persist (replace) the pace of `rate.source`."""
        window, found, at = rate.window, rate.found, self.dialect.bind_time
        await self._change(
            f"save the rate of {rate.source!r}",
            "INSERT INTO source_rates (source, rate, paused_until, updated_at, window_ends_at, "
            "window_limit, window_calls, window_phase_width, found_lower, found_upper, "
            "found_burst, found_held) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (source) DO UPDATE SET rate = excluded.rate, "
            "paused_until = excluded.paused_until, updated_at = excluded.updated_at, "
            "window_ends_at = excluded.window_ends_at, window_limit = excluded.window_limit, "
            "window_calls = excluded.window_calls, "
            "window_phase_width = excluded.window_phase_width, "
            "found_lower = excluded.found_lower, found_upper = excluded.found_upper, "
            "found_burst = excluded.found_burst, found_held = excluded.found_held",
            (
                rate.source, rate.rate, at(rate.paused_until), at(rate.updated_at),
                None if window is None else at(window.ends_at),
                None if window is None else window.limit,
                None if window is None else window.calls,
                None if window is None else window.phase_width,
                None if found is None else found.lower,
                None if found is None else found.upper,
                None if found is None else found.burst,
                None if found is None else found.held,
            ),
        )  # fmt: skip

    # -- source state -----------------------------------------------------------------------------

    async def source_state(self, source: str) -> SourceState:
        """Durable state of `source` (defaults if never written)."""
        r = await self._row(
            "SELECT needs_reauth, reauth_reason, watermark, checkpoint FROM source_state "
            "WHERE source = ?",
            (source,),
        )
        if r is None:
            return SourceState(source)
        return SourceState(source, bool(r[0]), r[1], r[2], r[3])

    async def set_needs_reauth(self, source: str, reason: str | None, now: datetime) -> None:
        """Flag (reason given) or clear (None) the operator action `syncd auth` for `source`."""
        await self._change(
            f"update the state of {source!r}",
            "INSERT INTO source_state (source, needs_reauth, reauth_reason, updated_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (source) DO UPDATE SET "
            "needs_reauth=excluded.needs_reauth, reauth_reason=excluded.reauth_reason, "
            "updated_at=excluded.updated_at",
            (source, reason is not None, self._text(reason), self.dialect.bind_time(now)),
        )
