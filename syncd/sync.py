"""The sync engine: one run of one source, from first request to the final `sync_runs` row.

No scheduling here; the daemon and the CLI decide when to call `SyncEngine.run`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from syncd.clock import Clock
from syncd.errors import SyncdError
from syncd.http import RequestStats
from syncd.logging import get_logger
from syncd.sources import Page, Source
from syncd.store import RunTotals, Store, UpsertCounts
from syncd.store.base import RunKind, RunStatus

log = get_logger(__name__)

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

    @property
    def ok(self) -> bool:
        """True if the run succeeded."""
        return self.status == "succeeded"


@dataclass(slots=True)
class _Tally:
    pages: int = 0
    seen: int = 0
    counts: UpsertCounts = field(default_factory=UpsertCounts)

    def totals(self, http: RequestStats) -> RunTotals:
        return RunTotals(
            pages=self.pages,
            items_seen=self.seen,
            items_created=self.counts.created,
            items_updated=self.counts.updated,
            items_unchanged=self.counts.unchanged,
            requests=http.requests,
            retries=http.retries,
            rate_limited=http.rate_limited,
        )


class SyncEngine:
    """Runs syncs against a store; stateless between runs."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def run(
        self,
        source: Source,
        kind: RunKind = "full",
        progress: ProgressCallback | None = None,
    ) -> SyncResult:
        """Fetch every page of `source`, upsert it, and record the run; never raises a SyncdError."""
        started = self._clock.monotonic()
        run_id = await self._store.start_run(source.name, kind, self._clock.now())
        http = RequestStats()
        tally = _Tally()
        with structlog.contextvars.bound_contextvars(source=source.name, run_id=run_id):
            log.info("sync.started", kind=kind)
            status: RunStatus = "succeeded"
            error: str | None = None
            try:
                async for page in source.pages(http):
                    await self._commit(source.name, page, tally)
                    if progress is not None:
                        progress(tally.pages, page.expected_pages, tally.seen)
            except asyncio.CancelledError:
                status, error = "cancelled", "the daemon was stopped during the run"
                raise
            except SyncdError as exc:
                status, error = "failed", str(exc)
            finally:
                result = SyncResult(
                    run_id=run_id,
                    source=source.name,
                    kind=kind,
                    status=status,
                    totals=tally.totals(http),
                    duration=round(self._clock.monotonic() - started, 3),
                    error=error,
                    latency=http.latency_summary(),
                )
                # Shielded: a cancelled run must still leave a closed, truthful row behind.
                await asyncio.shield(self._finish(result))
        return result

    async def _commit(self, source: str, page: Page, tally: _Tally) -> None:
        write = asyncio.ensure_future(
            self._store.upsert_products(source, page.records, self._clock.now())
        )
        try:
            counts = await asyncio.shield(write)
        except asyncio.CancelledError:
            # Let the page that is being written commit, and count it, before giving up.
            counts = await write
            self._add(tally, page, counts)
            raise
        self._add(tally, page, counts)

    @staticmethod
    def _add(tally: _Tally, page: Page, counts: UpsertCounts) -> None:
        tally.pages += 1
        tally.seen += len(page.records)
        tally.counts = tally.counts + counts

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
            "requests": t.requests,
            "retries": t.retries,
            "rate_limited": t.rate_limited,
            **result.latency,
        }
        if result.status == "succeeded":
            log.info("sync.finished", **fields)
        else:
            log.error("sync.finished", error=result.error, **fields)
