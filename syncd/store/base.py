"""What the rest of syncd may ask of a store, and the records that cross that boundary."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, NamedTuple, Protocol, get_args, runtime_checkable

RunKind = Literal["full", "incremental"]
RunStatus = Literal["running", "succeeded", "failed", "cancelled"]
TokenEventKind = Literal["issued", "reused", "refreshed", "invalidated", "failed"]
TOKEN_EVENT_KINDS: tuple[TokenEventKind, ...] = get_args(TokenEventKind)
"""What `token_events.event` holds (written by the token cache), in one place for the CLI and
the metrics."""


class ProductRecord(NamedTuple):
    """One product as it will be stored: the columns operators query plus the payload (canonical JSON).

    A named tuple, not a frozen dataclass: one is built per product, and a tuple is built in a
    third of the time (a frozen dataclass sets each field through `object.__setattr__`)."""

    sku: str
    id: int | None
    name: str | None
    price: float | None
    status: int | None
    type_id: str | None
    updated_at: str | None
    payload: str
    content_hash: str


@dataclass(frozen=True, slots=True)
class UpsertCounts:
    """How one batch changed the table."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0

    def __add__(self, other: UpsertCounts) -> UpsertCounts:
        return UpsertCounts(
            self.created + other.created,
            self.updated + other.updated,
            self.unchanged + other.unchanged,
        )


@dataclass(frozen=True, slots=True)
class RunTotals:
    """The counters a finished run writes to its `sync_runs` row."""

    pages: int = 0
    items_seen: int = 0
    items_created: int = 0
    items_updated: int = 0
    items_unchanged: int = 0
    items_deleted: int = 0
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A row of `sync_runs`."""

    id: int
    source: str
    kind: RunKind
    started_at: str
    finished_at: str | None
    status: RunStatus
    totals: RunTotals
    error: str | None


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A persisted credential; only the auth layer reads the secret fields."""

    access_token: str
    expires_at: datetime | None
    refresh_token: str | None = None
    issued_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """A row of `token_events`: what happened to a credential, identified by fingerprint only."""

    source: str
    at: datetime
    event: str
    expires_at: datetime | None = None
    fingerprint: str | None = None
    detail: str | None = None
    owner: str | None = None
    """The replica (process) that did it, as `Runtime.owner` names it; None before it was recorded."""


@dataclass(frozen=True, slots=True)
class TokenState:
    """A credential's row as the replicas coordinate on it: the token (None while only a refresh
    intent exists), its version (bumped by every write) and who, since when, is refreshing it."""

    token: TokenRecord | None
    version: int
    refreshing_by: str | None = None
    refresh_started_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CallWindowState:
    """A store's call window as syncd last knew it (AmeriCommerce): when the current one ends, the
    store's `max`, syncd's own calls counted in it, and within how many seconds its start is
    known, so that a new process does not take that window's share again."""

    ends_at: datetime
    limit: int
    calls: int
    phase_width: float


@dataclass(frozen=True, slots=True)
class RateSearch:
    """Where the search for the limit of a source not told it stands: the highest rate proven
    accepted, the rate that drew a 429 (the limit lies between), the most the store's burst was
    shown to hold (None: not bounded) and, once settled, the seconds the source has been held
    there without a 429 (its probe is due after `probe_interval` of them, over runs)."""

    lower: float
    upper: float
    burst: float | None = None
    held: float = 0.0


@dataclass(frozen=True, slots=True)
class SourceRate:
    """A source's persisted pace: its adaptive rate (None: not paced by one), the end of a
    pending `Retry-After` pause (None: none), its call window (None: none known) and, for a
    source not told its limit, where the search for it stands (None: not searched), so that the
    next owner of the source, or its next run, starts there."""

    source: str
    rate: float | None
    paused_until: datetime | None
    updated_at: datetime
    window: CallWindowState | None = None
    found: RateSearch | None = None


@dataclass(frozen=True, slots=True)
class SourceState:
    """State of a source that outlives runs.

    `watermark` is the committed incremental cursor (JSON, owned by the engine); `checkpoint` the
    progress of an unfinished full scan (JSON, owned by the engine); None when there is none.
    """

    source: str
    needs_reauth: bool = False
    reauth_reason: str | None = None
    watermark: str | None = None
    checkpoint: str | None = None


@dataclass(frozen=True, slots=True)
class RunProgress:
    """A running run's live counters, written with each of its pages: the page and its items
    are added to the run's row, the request counters (the run's so far) replace the row's."""

    run_id: int
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    arrived: int | None = None
    """Products the page brought, written or not (a disputed one is not); None: the records
    passed plus `PageCommit.seen`. The run's final row counts them all, so the live one must."""


@dataclass(frozen=True, slots=True)
class PageCommit:
    """What is written with one page, in the same transaction as its products.

    `scan_id` marks the skus as seen by that full scan; `checkpoint` / `watermark` replace the
    source's stored values when not None (use `CLEAR` to erase one); `run` updates the counters
    of the run that read the page, so that `syncd status` shows its progress.
    """

    scan_id: int | None = None
    checkpoint: str | None = None
    watermark: str | None = None
    run: RunProgress | None = None
    forget: tuple[str, ...] = ()
    """Skus whose `scan_id` marks are removed (a sku served again with another id or an older
    version: the scan no longer counts it as seen, so its verification reads it again)."""
    new: bool = False
    """A hint: no product of the page has a live stored row (the screen's view was empty), so
    the store need not look for unchanged rows before writing. Never changes what is written."""
    seen: tuple[str, ...] = ()
    """Skus of the page's unchanged products (live, with the hash that arrived, as the screen
    read them): not sent, marked as seen by `scan_id` if given, and counted as unchanged."""

    def arrived(self, sent: int) -> int:
        """The page's products for the running run's row, `sent` of them passed to be written."""
        if self.run is not None and self.run.arrived is not None:
            return self.run.arrived
        return sent + len(self.seen)


@dataclass(frozen=True, slots=True)
class StoredProduct:
    """What a full scan compares an arriving product with: the stored row's id and `updated_at`,
    whether it is live, whether this scan has already committed it, and its content hash."""

    id: int | None
    updated_at: str | None
    live: bool
    seen: bool
    content_hash: str | None = None


CLEAR = ""
"""Passed as a checkpoint or watermark: erase the stored value."""


class Store(Protocol):
    """Durable state of the daemon; every method is one transaction."""

    commit_depth: int
    """How many page commits of one full scan the store runs at once (syncd/commit_window.py):
    1 for a single writer (SQLite), more where the server runs them in parallel."""

    async def upsert_products(
        self, source: str, records: Sequence[ProductRecord], now: datetime
    ) -> UpsertCounts:
        """Insert new products, rewrite changed ones, leave identical ones untouched."""
        ...

    async def commit_page(
        self, source: str, records: Sequence[ProductRecord], now: datetime, commit: PageCommit
    ) -> UpsertCounts:
        """`upsert_products` plus the page's scan marks and progress, in one transaction."""
        ...

    async def unseen(self, source: str, scan_id: int, skus: Sequence[str]) -> list[str]:
        """Those of `skus` that full scan `scan_id` has not marked as seen."""
        ...

    async def mark_seen(self, source: str, scan_id: int, skus: Sequence[str]) -> None:
        """Record `skus` as seen by scan `scan_id` (without touching their products)."""
        ...

    async def mark_live_seen(self, source: str, scan_id: int) -> int:
        """Mark every live product of `source` as seen by scan `scan_id` (the marks of a scan
        that began with none live, made rows); how many marks were added."""
        ...

    async def scan_view(
        self, source: str, scan_id: int, skus: Sequence[str]
    ) -> dict[str, StoredProduct]:
        """The stored products among `skus`, each with whether scan `scan_id` has marked it seen."""
        ...

    async def count_seen(self, source: str, scan_id: int) -> int:
        """How many distinct skus scan `scan_id` has marked as seen."""
        ...

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
        ...

    async def count_products(self, source: str) -> int:
        """How many live (not tombstoned) products `source` has."""
        ...

    async def has_products(self, source: str) -> bool:
        """Whether `source` has a live (not tombstoned) product."""
        ...

    async def start_run(
        self,
        source: str,
        kind: RunKind,
        now: datetime,
        owner: str | None = None,
    ) -> int:
        """Open a `running` row owned by `owner` (shown to operators); the caller holds the
        source's run lock."""
        ...

    async def finish_run(
        self,
        run_id: int,
        status: RunStatus,
        totals: RunTotals,
        now: datetime,
        error: str | None = None,
    ) -> None:
        """Close a run with its outcome and counters."""
        ...

    async def fail_abandoned_runs(
        self,
        now: datetime,
        reason: str,
        *,
        source: str | None = None,
    ) -> int:
        """Mark `running` runs (of `source` only, if given) as `failed`; return how many. Only
        for a caller holding their sources' run locks: nobody else can be running them."""
        ...

    async def running_sources(self) -> list[str]:
        """The sources that have a run still marked `running`, sorted."""
        ...

    async def last_runs(self) -> list[RunRecord]:
        """The most recent run of each source."""
        ...

    async def runs(
        self,
        source: str | None = None,
        status: RunStatus | None = None,
        since: datetime | None = None,
        limit: int = 50,
    ) -> list[RunRecord]:
        """Runs, newest first, filtered."""
        ...

    async def add_token_event(self, event: TokenEvent) -> None:
        """Append to `token_events`."""
        ...

    async def token_events(
        self,
        source: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        *,
        event: str | Sequence[str] | None = None,
    ) -> list[TokenEvent]:
        """Token events, newest first, filtered; `event` keeps only that kind (or those kinds)."""
        ...

    async def token_event_counts(self) -> dict[tuple[str, str], int]:
        """How many token events of each (source, event) were ever recorded."""
        ...

    async def load_token(self, key: str) -> TokenRecord | None:
        """The persisted credential for cache key `key`."""
        ...

    async def save_token(self, key: str, token: TokenRecord, now: datetime) -> None:
        """Persist (replace) the credential for `key` atomically, bump its version and end any
        refresh intent on it (the refresh that saves it, or an operator's newer grant)."""
        ...

    async def delete_token(self, key: str) -> None:
        """Forget the credential for `key`."""
        ...

    async def token_state(self, key: str) -> TokenState | None:
        """The row of `key` with its version and refresh intent (None: no row at all)."""
        ...

    async def begin_token_refresh(
        self, key: str, expected_version: int, owner: str, now: datetime, stale_before: datetime
    ) -> bool:
        """Record that `owner` refreshes `key`, committed before the request is sent; True only if
        the row is still at `expected_version` (0: no row yet) and nobody else holds a refresh
        intent begun at or after `stale_before`. `save_token` ends the intent."""
        ...

    async def abandon_token_refresh(
        self, key: str, owner: str, now: datetime, *, spent: bool = False
    ) -> None:
        """Drop `owner`'s refresh intent on `key` (a refresh that failed); `spent` also drops the
        refresh token, which the store refused or may have consumed: nobody presents it again."""
        ...

    async def revoke_token(self, key: str, access_token: str, now: datetime) -> bool:
        """Expire `key`'s token now if it is still `access_token` (a 401 for it); True if it was."""
        ...

    async def source_rate(self, source: str) -> SourceRate | None:
        """The persisted pace of `source` (None: never saved)."""
        ...

    async def save_source_rate(self, rate: SourceRate) -> None:
        """Persist (replace) the pace of `rate.source`."""
        ...

    async def source_state(self, source: str) -> SourceState:
        """Durable state of `source` (defaults if never written)."""
        ...

    async def set_needs_reauth(self, source: str, reason: str | None, now: datetime) -> None:
        """Flag (reason given) or clear (None) the operator action `syncd auth` for `source`."""
        ...

    async def check_file(self) -> None:
        """StoreError if the storage written to is no longer the one opened (a database file
        deleted or replaced since); cheap enough for every probe."""
        ...

    async def prune_runs(self, before: datetime) -> int:
        """Remove the runs that ended before `before`, oldest first, in bounded transactions;
        never a running run, nor the newest few or the newest succeeded run of a source
        (store/history.py); return how many."""
        ...

    async def prune_token_events(self, before: datetime) -> int:
        """Remove the token events older than `before`, oldest first, in bounded transactions;
        never the newest of a (source, event), and `token_event_counts` still counts the
        removed ones; return how many."""
        ...


ChangeOp = Literal["created", "updated", "deleted", "revived"]
CHANGE_OPS: tuple[ChangeOp, ...] = get_args(ChangeOp)


@dataclass(frozen=True, slots=True)
class ChangeEntry:
    """A row of `product_changes`: one product write that changed something.

    `seq` counts from 1 per source with no gaps. `payload` is the product's JSON after the write;
    for `deleted` it is the last payload stored before the tombstone (so is `content_hash`).
    """

    source: str
    seq: int
    sku: str
    op: ChangeOp
    run_id: int | None
    at: str
    content_hash: str
    payload: str | None


@dataclass(frozen=True, slots=True)
class FeedHead:
    """Where a source's feed stands: its newest seq, and the highest seq retention removed
    (entries `pruned_through + 1 .. last_seq` are all retained)."""

    source: str
    last_seq: int = 0
    pruned_through: int = 0


class ProductSnapshot(Protocol):
    """The live products of one source as of feed seq `seq`, read without loading them all."""

    seq: int

    def products(self) -> AsyncIterator[ProductRecord]:
        """The live products, by sku."""
        ...


@runtime_checkable
class ChangeFeed(Protocol):
    """The change feed of a store (docs/CHANGES.md); every write method is one transaction.

    Entries are appended by `commit_page`, `upsert_products` and `finish_full_scan` themselves,
    in the transaction that changes the products, so the feed replayed from seq 0 rebuilds the
    table exactly.
    """

    async def changes(self, source: str, since: int, limit: int) -> list[ChangeEntry]:
        """Up to `limit` entries of `source` with seq > `since`, in seq order;
        ChangesExpiredError if retention already removed some of them."""
        ...

    async def feed_heads(self) -> dict[str, FeedHead]:
        """Where each source that ever appended an entry stands."""
        ...

    async def prune_changes(self, before: datetime, sources: Sequence[str] | None = None) -> int:
        """Remove the entries older than `before` (oldest first, per source; of `sources` only
        when given); return how many."""
        ...

    def snapshot(self, source: str) -> AbstractAsyncContextManager[ProductSnapshot]:
        """A consistent read of the live products of `source` and the seq it corresponds to."""
        ...

    async def webhook_cursors(self, webhook: str) -> dict[str, int]:
        """source -> the last seq webhook `webhook` delivered (sources never delivered absent)."""
        ...

    async def set_webhook_cursor(self, webhook: str, source: str, seq: int, now: datetime) -> None:
        """Record that `webhook` delivered every entry of `source` up to `seq`."""
        ...
