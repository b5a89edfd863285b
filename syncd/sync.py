"""The sync engine: one run of one source, from first request to the final `sync_runs` row.

No scheduling here; the daemon and the CLI decide when to call `SyncEngine.run`.
"""

from __future__ import annotations

import asyncio
import math
import os
import traceback
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TypeVar

import structlog

from syncd.checkpoint import FullScanCheckpoint, decode_cursor, encode_cursor
from syncd.clock import Clock
from syncd.commit_window import CommitWindow
from syncd.completeness import Doubts, FirstScan, Screened, screen
from syncd.config.sources import CHECKPOINT_MAX_AGE
from syncd.errors import NeedsReauthError, SyncdError
from syncd.http import RequestStats, RetryBudget
from syncd.logging import get_logger
from syncd.redaction import Redactor
from syncd.sources import Page, Source
from syncd.sources.base import Cursor, ListingIncomplete, VerifiableSource
from syncd.sources.fanout import read_ahead
from syncd.store import (
    CLEAR,
    PageCommit,
    RunProgress,
    RunTotals,
    SourceState,
    Store,
    UpsertCounts,
)
from syncd.store.base import RunKind, RunStatus

log = get_logger(__name__)

T = TypeVar("T")
MESSAGE_LIMIT = 200
# Failed full runs in a row after which a scheduled run stops resuming their scan (see
# `SyncEngine._resumes_keep_failing`).
RESUME_ATTEMPTS = 3

ProgressCallback = Callable[[int, int | None, int], None]
"""Called after each committed page with (pages done, pages expected or None, items seen)."""


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What one run did."""

    run_id: int
    source: str
    kind: RunKind
    status: RunStatus
    totals: RunTotals
    duration: float
    error: str | None = None
    latency: dict[str, float] = field(default_factory=dict)
    latencies: tuple[float, ...] = field(default=(), repr=False)
    """Every response time of the run in seconds, for the daemon's latency histogram."""

    @property
    def ok(self) -> bool:
        """True if the run succeeded."""
        return self.status == "succeeded"


@dataclass(slots=True)
class _Tally:
    """What a run has written so far; grows page by page."""

    pages: int = 0
    seen: int = 0
    deleted: int = 0
    counts: UpsertCounts = field(default_factory=UpsertCounts)

    def add(self, arrived: int, counts: UpsertCounts) -> None:
        """Count one committed page: `arrived` products read, `counts` what became of them."""
        self.pages += 1
        self.seen += arrived
        self.counts = self.counts + counts

    def totals(self, stats: RequestStats) -> RunTotals:
        """The run's row counters: this tally and the requests in `stats`."""
        return RunTotals(
            pages=self.pages,
            items_seen=self.seen,
            items_created=self.counts.created,
            items_updated=self.counts.updated,
            items_unchanged=self.counts.unchanged,
            items_deleted=self.deleted,
            requests=stats.requests,
            retries=stats.retries,
            rate_limited=stats.rate_limited,
        )


@dataclass(frozen=True, slots=True)
class _Run:
    """One run, as every stage of it needs it: what is fixed when it starts, and the two
    counters (requests in `stats`, products in `tally`) its stages fill in."""

    source: Source
    run_id: int
    started_at: datetime
    overlap: float
    stats: RequestStats
    tally: _Tally
    progress: ProgressCallback | None

    def report(self, done: int, expected: int | None) -> None:
        """Tell the progress callback, if any, that `done` pages are committed."""
        if self.progress is not None:
            self.progress(done, expected, self.tally.seen)


def _consequence(source: Source) -> str:
    """What a doubtful scan of `source` leads to, for the log."""
    if isinstance(source, VerifiableSource):
        return "verified by keyset listing before any tombstone"
    return "no tombstones; the next run is a full scan"


def internal_error(exc: BaseException, redactor: Redactor | None = None) -> str:
    """`exc` as a run's one-line error: its type, the first line of its message redacted, then cut
    short (an arbitrary message may carry anything, a whole answer included), and where it was
    raised."""
    first = next(iter(str(exc).strip().splitlines()), "")
    if redactor is not None:
        first = redactor.redact(first)
    if len(first) > MESSAGE_LIMIT:
        first = first[:MESSAGE_LIMIT] + "…"
    text = f"internal error: {type(exc).__name__}" + (f": {first}" if first else "")
    frames = stack_of(exc)
    return f"{text} (at {frames[-1]})" if frames else text


def stack_of(exc: BaseException, limit: int = 8) -> list[str]:
    """The innermost `limit` frames of `exc` as 'syncd/module.py:123 in function' (no code, no
    locals, no message: nothing a secret could ride on)."""
    frames = traceback.extract_tb(exc.__traceback__)[-limit:]
    return [f"{_short_path(f.filename)}:{f.lineno} in {f.name}" for f in frames]


_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
"""The directory that holds the `syncd` package (a checkout, or site-packages)."""


def _short_path(filename: str, root: str = _PACKAGE_ROOT) -> str:
    """`syncd/...` for the package's own files (relative to `root`, where the package really
    is, so a checkout folder that is itself named `syncd` changes nothing), else the bare name."""
    path = filename.replace("\\", "/")
    package = root.replace("\\", "/").rstrip("/") + "/syncd/"
    if path.startswith(package):
        return path[len(package) - len("syncd/") :]
    return path.rsplit("/", 1)[-1]


@asynccontextmanager
async def _closing(pages: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Close a source's async generator as soon as the loop over it ends, however it ends."""
    try:
        yield pages
    finally:
        aclose = getattr(pages, "aclose", None)
        if aclose is not None:
            await aclose()


class SyncEngine:
    """Runs syncs against a store; all state between runs lives in the store.

    A run's error (in its result, its row, its log lines and a `needs_reauth` reason) passes
    through `redactor`: an error message may quote an answer that echoed a secret.
    """

    def __init__(
        self,
        store: Store,
        clock: Clock,
        owner: str | None = None,
        *,
        redactor: Redactor | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._owner = owner
        self._redactor = redactor or Redactor()

    async def run(
        self,
        source: Source,
        kind: RunKind | None = None,
        progress: ProgressCallback | None = None,
        *,
        overlap: float = 120.0,
        retry_budget: RetryBudget | None = None,
        checkpoint_max_age: float = CHECKPOINT_MAX_AGE,
    ) -> SyncResult:
        """One run of `source`: `full`, `incremental`, or (None) the full scan an interrupted run
        left unfinished, else incremental when a watermark exists, else full.

        An unfinished scan is resumed if it started at most `checkpoint_max_age` seconds ago:
        its committed pages are that old, and a change that does not bump `updated_at` made
        since is seen only by a scan that reads them again. An older one starts over.

        Source, transport and auth failures end the run as `failed` (recorded, not raised), and
        so does any other exception ("internal error: Type: message", logged with its stack); a
        failure to write the run's last row is raised. Once the run's retries exceed
        `retry_budget`, it stops as `failed`: pages already stored stay, and so does the
        checkpoint the next run resumes from.
        """
        state = await self._store.source_state(source.name)
        watermark = decode_cursor(state.watermark)
        kind = await self._kind(source, kind, state, watermark)
        # Restart from the watermark's second minus the overlap, never from a position inside a
        # second: that position may have shifted since.
        cursor = Cursor(watermark.since - timedelta(seconds=overlap)) if watermark else None
        started = self._clock.monotonic()
        started_at = self._clock.now()
        run_id = await self._store.start_run(source.name, kind, started_at, self._owner)
        stats = RequestStats(budget=retry_budget)
        run = _Run(source, run_id, started_at, overlap, stats, _Tally(), progress)
        with structlog.contextvars.bound_contextvars(source=source.name, run_id=run_id):
            log.info("sync.started", kind=kind)
            status: RunStatus = "succeeded"
            error: str | None = None
            try:
                if kind == "full" or cursor is None:
                    resumed = self._resumable(source, state, checkpoint_max_age)
                    error = await self._full(run, resumed)
                else:
                    await self._incremental(run, cursor)
            except asyncio.CancelledError as exc:
                # The canceller says why (`task.cancel(reason)`): a daemon's drain, a signal.
                reason = exc.args[0] if exc.args and isinstance(exc.args[0], str) else None
                status, error = "cancelled", reason or "the run was stopped before it finished"
                raise
            except Exception as exc:
                status, error = "failed", await self._failure(source, exc)
            finally:
                stats.summarize()
                result = SyncResult(
                    run_id=run_id,
                    source=source.name,
                    kind=kind,
                    status=status,
                    totals=run.tally.totals(stats),
                    duration=round(self._clock.monotonic() - started, 3),
                    error=error,
                    latency=stats.latency_summary(),
                    latencies=tuple(stats.latencies),
                )
                # Shielded: a cancelled run must still leave a closed, truthful row behind.
                await asyncio.shield(self._finish(result))
        return result

    async def _kind(
        self, source: Source, asked: RunKind | None, state: SourceState, watermark: Cursor | None
    ) -> RunKind:
        """The kind of run to do when `asked` for one (None: resume an unfinished scan, else
        incremental once there is a watermark, else full)."""
        kind = asked
        if kind is None:
            # An interrupted full scan is finished first; otherwise its checkpoint would wait
            # for the next full slot while its committed pages grow stale.
            unfinished = state.checkpoint is not None
            if unfinished and watermark is not None and await self._resumes_keep_failing(source):
                unfinished = False
            kind = "full" if unfinished or watermark is None else "incremental"
        if kind == "incremental" and watermark is None:
            log.info("sync.full_required", source=source.name, reason="no watermark yet")
            kind = "full"
        return kind

    async def _failure(self, source: Source, exc: Exception) -> str:
        """The error a run that raised `exc` ends with (redacted), after what it calls for."""
        if isinstance(exc, NeedsReauthError):
            error = self._redactor.redact(str(exc))
            await self._store.set_needs_reauth(source.name, error, self._clock.now())
            log.error("source.needs_reauth", detail=error, action=f"run 'syncd auth {source.name}'")
            return error
        if isinstance(exc, SyncdError):
            return self._redactor.redact(str(exc))
        # A bug, or an answer nothing anticipated: the run must not read as succeeded, and the
        # daemon (which expects SyncdError at most) must live on.
        error = internal_error(exc, self._redactor)
        log.error(
            "sync.internal_error", error=error, error_type=type(exc).__name__, stack=stack_of(exc)
        )
        return error

    async def _full(self, run: _Run, resumed: FullScanCheckpoint | None) -> str | None:
        """The full scan; returns why it tombstoned nothing, or None when it could decide."""
        source = run.source
        # A first scan reads no stored view for pages that cannot have stored rows: one round
        # trip less per page (a resumed scan reads them all: its first attempt wrote some). Its
        # marks are implicit: every live product is one it wrote, so none is stored as a mark
        # (a third of a page's writes on PostgreSQL) until something needs them as rows.
        first = None
        checkpoint = resumed
        if checkpoint is None:
            first = None if await self._store.has_products(source.name) else FirstScan()
            checkpoint = FullScanCheckpoint(
                run.run_id, run.started_at, source.page_size, None, frozenset(),
                implicit=first is not None,
            )  # fmt: skip
        else:
            log.info("sync.resumed", scan_id=checkpoint.scan_id, pages_done=len(checkpoint.done))
            if checkpoint.implicit:
                checkpoint = await self._explicit(run, checkpoint, "the scan resumed")
        doubts = Doubts()
        # Several commits in flight where the store runs them in parallel (syncd/commit_window.py).
        window = CommitWindow(self._store.commit_depth, checkpoint.done)
        # Closed on exit: when a commit fails, the page workers stop now, not when collected.
        async with _closing(source.full_pages(run.stats, checkpoint.done)) as pages, window:
            async for page in pages:
                checkpoint = await self._scan_page(run, checkpoint, page, doubts, window, first)
        return await self._settle(run, checkpoint, doubts, first=first is not None)

    async def _scan_page(
        self,
        run: _Run,
        checkpoint: FullScanCheckpoint,
        page: Page,
        doubts: Doubts,
        window: CommitWindow,
        first: FirstScan | None = None,
    ) -> FullScanCheckpoint:
        """Screen and commit one page of the full scan; the checkpoint that includes it."""
        source = run.source
        if window.overlaps(r.sku for r in page.records):
            await window.drain()  # screened against its committed row and scan mark
        total, mutated = checkpoint.total, checkpoint.mutated
        was_mutated = mutated
        if page.total_count is not None:
            if total is not None and page.total_count != total and not mutated:
                mutated = True
                log.warning(
                    "sync.catalog_changed",
                    total_before=total,
                    total_now=page.total_count,
                    consequence=_consequence(source),
                )
            total = page.total_count if total is None else total
        screened = await self._screen(
            source.name, checkpoint.scan_id, page, doubts, first=first, implicit=checkpoint.implicit
        )
        if first is not None:
            first.add(r.sku for r in screened.keep)
        if checkpoint.implicit and screened.disputed:
            # A disputed sku stops counting as seen: the marks must be rows to lose one. The
            # commits in flight land first, so that none of their products misses its mark.
            await window.drain()
            checkpoint = await self._explicit(run, checkpoint, "a sku was disputed")
        short = self._short(page, total, source.page_size)
        if short:
            # A short page is not done: a resumed scan asks for it again.
            doubts.short(page.number, len(page.records), short, source.page_size)
        mutated = mutated or bool(screened.repeated or screened.disputed)
        if mutated and not was_mutated:
            await window.drain()  # no checkpoint without the flag may land after this one
        # The checkpoint claims only pages whose own commit succeeded, plus this one.
        checkpoint = replace(
            checkpoint, total=total, done=window.claims(None if short else page.number),
            mutated=mutated,
        )  # fmt: skip
        commit = PageCommit(
            None if checkpoint.implicit else checkpoint.scan_id,
            checkpoint.encode(),
            forget=tuple(screened.disputed),
            new=not screened.stored,
            seen=tuple(screened.unchanged),
        )
        await self._commit(
            run, Page(page.number, screened.keep), commit, len(page.records),
            window=window, done=None if short else page.number,
        )  # fmt: skip
        run.report(len(checkpoint.done), page.expected_pages)
        return checkpoint

    async def _settle(
        self, run: _Run, checkpoint: FullScanCheckpoint, doubts: Doubts, *, first: bool = False
    ) -> str | None:
        """After the last page: tombstone what a complete (or verified) scan did not see, or
        nothing when that cannot be proved; returns why nothing was tombstoned, if so. `first`:
        the scan began with no live product (`FirstScan`)."""
        # A deletion shifts every later offset page, so a product may have slid into a page
        # already read; a proxy may serve a page empty, short or stale. Only a scan that provably
        # saw every product (checked below), or a keyset verification pass, proves that a product
        # it did not see is gone.
        source, total = run.source, checkpoint.total
        scan_id = checkpoint.scan_id
        watermark = encode_cursor(Cursor(checkpoint.started))
        committed = await self._committed(source.name, checkpoint)
        if total is not None and committed != total:
            doubts.add(f"{committed} distinct skus committed, total_count {total}")
        if checkpoint.mutated and not (doubts.repeated or doubts.disputed):
            doubts.add("the catalog changed under the scan (or an earlier attempt doubted it)")
        skipped: str | None = None
        if doubts:
            log.warning(
                "sync.scan_incomplete",
                reasons=doubts.reasons(),
                committed=committed,
                total=total,
                consequence=_consequence(source),
            )
        tombstone = isinstance(source, VerifiableSource)
        if isinstance(source, VerifiableSource):
            if not doubts:
                since = checkpoint.started - timedelta(seconds=run.overlap)
                if await self._changed_since(source, since, total, run.stats):
                    doubts.add("the catalog probe saw it change")
            if doubts:
                if checkpoint.implicit:  # the verification asks which skus the scan saw
                    checkpoint = await self._explicit(run, checkpoint, "the scan is verified")
                try:
                    scan_id = await self._verify(run, source, scan_id)
                except ListingIncomplete as exc:
                    skipped = f"{doubts.summary()}; the verification listing: {exc}"
        elif doubts:
            watermark = CLEAR  # nothing can find what the scan missed: the next run is full
        if first and scan_id == checkpoint.scan_id and not doubts.disputed:
            # Every live product was written by this scan, marked (in its commit, or implicitly),
            # and only a disputed sku loses its mark: the set difference would find nothing. So
            # implicit marks never decide one (a dispute makes them rows, a verification has its).
            tombstone = False
        if skipped is not None:
            tombstone, watermark = False, CLEAR  # the next run is a full scan that tries again
            log.warning(
                "sync.tombstones_skipped",
                reason=skipped,
                committed=committed,
                total=total,
                repeated=doubts.repeated,
                disputed=doubts.disputed,
                short_pages=len(doubts.short_pages),
                consequence="nothing tombstoned; the next run is a full scan",
            )
        run.tally.deleted += await asyncio.shield(
            self._store.finish_full_scan(
                source.name,
                scan_id,
                self._clock.now(),
                tombstone=tombstone,
                watermark=watermark,
                run_id=run.run_id,
            )
        )
        return None if skipped is None else f"tombstones skipped: {skipped}"

    async def _committed(self, source: str, checkpoint: FullScanCheckpoint) -> int:
        """How many distinct skus the scan has committed: its marks, or (implicit ones) every
        live product, since each is one it wrote."""
        if checkpoint.implicit:
            return await self._store.count_products(source)
        return await self._store.count_seen(source, checkpoint.scan_id)

    async def _explicit(
        self, run: _Run, checkpoint: FullScanCheckpoint, why: str
    ) -> FullScanCheckpoint:
        """Store an implicit scan's marks as rows (one for each live product, all of which it
        wrote); the checkpoint that says so, saved with the next page."""
        marked = await self._store.mark_live_seen(run.source.name, checkpoint.scan_id)
        log.info("sync.marks_stored", scan_id=checkpoint.scan_id, marks=marked, reason=why)
        return replace(checkpoint, implicit=False)

    @staticmethod
    def _short(page: Page, total: int | None, size: int) -> int:
        """The scan's page count if `page` is a page before the last that came back with fewer
        products than a page holds (an empty or short page in the middle), else 0."""
        if total is None:
            return 0
        pages = max(1, math.ceil(total / size))
        return pages if page.number < pages and len(page.records) < size else 0

    async def _screen(
        self,
        source: str,
        scan_id: int,
        page: Page,
        doubts: Doubts,
        *,
        stored: bool = True,
        later: str = "read again by sku before any tombstone",
        first: FirstScan | None = None,
        implicit: bool = False,
    ) -> Screened:
        """`page` against the stored rows and this scan's marks (see `completeness.screen`);
        without `stored`, only against itself (one sku with two ids). `later` says what becomes
        of a disputed sku, for the log. `first`: no read when none of the page can be stored.
        `implicit`: the scan's marks are implicit (every live row is one it wrote)."""
        skus = [r.sku for r in page.records]
        # A page that overlaps a write in flight waited for it (`_scan_page`), so every sku
        # `first` holds for this page is committed: the read below then sees it.
        read = stored and not (first is not None and first.untouched(skus))
        view = await self._store.scan_view(source, scan_id, skus) if read else {}
        if implicit:
            view = {sku: replace(row, seen=row.live) for sku, row in view.items()}
        screened = screen(page.records, view)
        if screened.disputed:
            log.warning(
                "sync.sku_conflict",
                page=page.number,
                skus=screened.disputed[:10],
                count=len(screened.disputed),
                consequence=f"not written; {later}",
            )
        doubts.screened(screened)
        return screened

    async def _resumes_keep_failing(self, source: Source) -> bool:
        """True when the last RESUME_ATTEMPTS runs were all failed full runs: the scan keeps
        breaking (a page that always fails, an API that is down), and resuming it again would
        also stop the incremental runs that keep the rest of the catalog fresh. Scheduled runs
        are then incremental; a `--full` or `full_schedule` run still resumes the scan."""
        runs = await self._store.runs(source.name, limit=RESUME_ATTEMPTS)
        failing = len(runs) == RESUME_ATTEMPTS and all(
            r.kind == "full" and r.status == "failed" for r in runs
        )
        if failing:
            log.warning(
                "sync.resume_deferred",
                source=source.name,
                failed_runs=RESUME_ATTEMPTS,
                last_error=runs[0].error,
                consequence="an incremental run now; the next full run resumes the scan",
            )
        return failing

    def _resumable(
        self, source: Source, state: SourceState, max_age: float
    ) -> FullScanCheckpoint | None:
        """The unfinished full scan a full run continues, or None if there is none it may use."""
        checkpoint = FullScanCheckpoint.decode(state.checkpoint)
        if checkpoint is None:
            return None
        age = (self._clock.now() - checkpoint.started).total_seconds()
        reason = None
        if checkpoint.page_size != source.page_size:
            reason = f"page_size changed from {checkpoint.page_size} to {source.page_size}"
        elif age > max_age:
            reason = f"started {age:.0f} s ago, more than checkpoint_max_age ({max_age:.0f} s)"
        if reason is None:
            return checkpoint
        log.info(
            "sync.checkpoint_discarded",
            scan_id=checkpoint.scan_id,
            pages_done=len(checkpoint.done),
            reason=reason,
            consequence="a fresh full scan",
        )
        return None

    async def _changed_since(
        self, source: VerifiableSource, since: datetime, total: int | None, stats: RequestStats
    ) -> bool:
        """Whether the catalog may have changed under the scan although every page reported the
        same `total_count`: one request for the total now and the newest product's `created_at`.

        Ids only grow, so inserts land past every page and shift nothing; only a deletion does.
        With no product created since the scan began, the total now is the scan's total minus
        its deletions, so an equal total proves that none happened (T_now = T0 - D + I, I = 0).
        """
        probe = await source.probe(stats, since)
        if probe.total == total and not probe.created_since:
            return False
        log.warning(
            "sync.catalog_changed",
            total_before=total,
            total_now=probe.total,
            created_since=probe.created_since,
            since=since.isoformat(),
            consequence="verified by keyset listing before any tombstone",
        )
        return True

    async def _verify(self, run: _Run, source: VerifiableSource, scan_id: int) -> int:
        """List every sku by id keyset (no deletion can shift it), fetch the ones the offset scan
        missed, and return the id of the verification scan whose marks decide tombstones."""
        # This run's own id: marks left by an earlier, interrupted verification of the same scan
        # may name skus deleted since, and must not count.
        verify_id = -run.run_id
        listed = fetched = 0
        async with _closing(source.list_skus(run.stats)) as listing:
            async for skus in listing:
                missing = await self._store.unseen(source.name, scan_id, skus)
                if missing:
                    records = await source.fetch_skus(run.stats, missing)
                    fetched += len(records)
                    # Read by sku, these are the store's word, except one sku with two ids.
                    page = Page(0, records)
                    kept = await self._screen(source.name, verify_id, page, Doubts(), stored=False)
                    await self._commit(
                        run, Page(0, kept.keep), PageCommit(scan_id=verify_id), len(records)
                    )
                await self._store.mark_seen(source.name, verify_id, skus)
                listed += len(skus)
        log.info("sync.verified", listed=listed, fetched_missing=fetched)
        return verify_id

    async def _incremental(self, run: _Run, cursor: Cursor) -> None:
        """Read the changes since `cursor`, page by page, each page moving the watermark."""
        name = run.source.name
        # Page N+1 is asked for while page N is screened and committed: the keyset read makes
        # the same requests in the same order, and the watermark still moves only with commits.
        changed = read_ahead(run.source.changed_pages(run.stats, cursor))
        async with _closing(changed) as pages:
            async for page in pages:
                next_cursor = page.cursor or cursor
                # No scan marks here (scan id 0 is never used): only the stored rows count.
                kept = await self._screen(
                    name, 0, page, Doubts(), later="the next full scan reads it by sku"
                )
                await self._commit(
                    run, Page(page.number, kept.keep),
                    PageCommit(
                        watermark=encode_cursor(next_cursor),
                        new=not kept.stored,
                        seen=tuple(kept.unchanged),
                    ),
                    len(page.records),
                )  # fmt: skip
                cursor = next_cursor
                run.report(run.tally.pages, None)

    async def _commit(
        self,
        run: _Run,
        page: Page,
        commit: PageCommit,
        seen: int | None = None,
        *,
        window: CommitWindow | None = None,
        done: int | None = None,
    ) -> None:
        """Write `page`; `seen` is how many products arrived (default: those written). With a
        `window`, the write is started there (confirming page `done` when it commits)."""
        stats = run.stats  # the run's row shows its progress page by page (`syncd status`)
        arrived = len(page.records) if seen is None else seen
        live = RunProgress(run.run_id, stats.requests, stats.retries, stats.rate_limited, arrived)
        commit = replace(commit, run=live)
        if window is not None:
            name = run.source.name
            written = self._store.commit_page(name, page.records, self._clock.now(), commit)
            skus = [*(r.sku for r in page.records), *commit.forget, *commit.seen]
            await window.add(done, skus, written, lambda c: run.tally.add(arrived, c))
            return
        write = asyncio.ensure_future(
            self._store.commit_page(run.source.name, page.records, self._clock.now(), commit)
        )
        try:
            counts = await asyncio.shield(write)
        except asyncio.CancelledError:
            # Let the page that is being written commit, and count it, before giving up.
            counts = await write
            run.tally.add(arrived, counts)
            raise
        run.tally.add(arrived, counts)

    async def _finish(self, result: SyncResult) -> None:
        await self._store.finish_run(
            result.run_id, result.status, result.totals, self._clock.now(), result.error
        )
        t = result.totals
        fields = {
            "kind": result.kind,
            "status": result.status,
            "duration_s": result.duration,
            "pages": t.pages,
            "items_seen": t.items_seen,
            "items_created": t.items_created,
            "items_updated": t.items_updated,
            "items_unchanged": t.items_unchanged,
            "items_deleted": t.items_deleted,
            "requests": t.requests,
            "retries": t.retries,
            "rate_limited": t.rate_limited,
            **result.latency,
        }
        if result.status == "succeeded":
            log.info("sync.finished", **fields)
        else:
            log.error("sync.finished", error=result.error, **fields)
