"""The runtime: one process's store, client pool, token cache and sources, opened and closed
together; runs a source now (`sync`) or under a lease (`sync_leased`). The daemon schedules it."""

from __future__ import annotations

import asyncio
import os
import random
import socket
from contextlib import AsyncExitStack
from datetime import datetime
from types import TracebackType
from typing import Self

from syncd.auth import TokenCache
from syncd.clock import Clock, SystemClock
from syncd.config import Settings
from syncd.errors import LeaseLostError
from syncd.fleet import kept
from syncd.http import ClientPool, RetryBudget
from syncd.logging import get_logger
from syncd.sources import Source
from syncd.store.base import RunKind
from syncd.store.factory import AnyStore, open_store, run_locks
from syncd.store.postgres import PostgresStore
from syncd.store.postgres_leases import Lease, PostgresLeases
from syncd.sync import ProgressCallback, SyncEngine, SyncResult
from syncd.wiring import build_source

log = get_logger(__name__)

_NOT_OPEN = "Runtime is not open; use it inside 'async with Runtime(...)'"


class Runtime:
    """Everything one process needs to sync: store, pool, token cache, engine and built sources."""

    def __init__(
        self, settings: Settings, clock: Clock | None = None, rng: random.Random | None = None
    ):
        self.settings = settings
        self.clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._stack = AsyncExitStack()
        self._store: AnyStore | None = None
        self._pool: ClientPool | None = None
        self._cache: TokenCache | None = None
        self._run_locks = run_locks(settings.store)
        self.owner = ""
        """Who this runtime's runs belong to, as recorded on them (set when it opens)."""
        self.started_at = self.clock.now()
        self.leases: PostgresLeases | None = None
        """On PostgreSQL: the leases every run holds instead of a run lock (docs/SCALING.md)."""
        self.sources: dict[str, Source] = {}

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            self._store = await stack.enter_async_context(
                open_store(
                    self.settings.store,
                    redactor=self.settings.redactor,
                    changes=self.settings.changes,
                    # Half a lease: a stopped replica's open transaction cannot hold a source
                    # (its fence's row lock) much past the lease (docs/SCALING.md).
                    idle_in_transaction=self.settings.replica.lease_seconds / 2,
                )
            )
            self._pool = await stack.enter_async_context(
                ClientPool(self.settings.http, self.clock, self._rng, rates=self._store)
            )
            self.started_at = self.clock.now()
            self.owner = process_owner(self.started_at)
            # Entered after the store: on the way out it saves any token it could not save before.
            cache = await stack.enter_async_context(
                TokenCache(
                    self._store,
                    self.clock,
                    redactor=self.settings.redactor,
                    owner=self.owner,
                    poll_interval=self.settings.store.token_poll_interval,
                    stale_after=self.settings.store.token_refresh_stale_after,
                )
            )
            self._cache = cache
            if isinstance(self._store, PostgresStore):
                # Whoever claims a source next closes its abandoned runs, under the lease.
                self.leases = PostgresLeases(self._store, self.settings.replica.lease_seconds)
            for name in [] if self.leases else await self._store.running_sources():
                # A free lock: nobody runs the source, so its `running` rows were abandoned.
                # Held while closing them, so that no new run of it can start in between.
                async with self._run_locks.try_hold(name, self.owner) as free:
                    if free:
                        await self._close_abandoned(name)
            for source in self.settings.sources:
                self.sources[source.name] = build_source(source, self._pool, cache, self.clock)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    @property
    def store(self) -> AnyStore:
        """The open store."""
        if self._store is None:
            raise RuntimeError(_NOT_OPEN)
        return self._store

    @property
    def pool(self) -> ClientPool:
        """The open client pool."""
        if self._pool is None:
            raise RuntimeError(_NOT_OPEN)
        return self._pool

    @property
    def cache(self) -> TokenCache:
        """The shared token cache."""
        if self._cache is None:
            raise RuntimeError(_NOT_OPEN)
        return self._cache

    def _engine(self) -> SyncEngine:
        """A sync engine on this runtime's store and clock, recording its runs as `owner`; only
        for `sync()`, which holds the source's run lock around it."""
        return SyncEngine(self.store, self.clock, owner=self.owner, redactor=self.settings.redactor)

    async def sync(
        self, name: str, kind: RunKind | None = None, progress: ProgressCallback | None = None
    ) -> SyncResult:
        """One run of source `name` with its configured options, holding the source's run lock
        (SourceBusyError, naming the holder, while another process or runtime runs it)."""
        self.settings.source(name)  # an unknown name: the clear error, before any claim or lock
        if self.leases is not None:
            lease = await self.leases.claim(name, self.owner)
            try:
                return await self.sync_leased(lease, kind, progress)
            finally:
                # Released with the run's last write; its schedule is the daemons' to keep.
                await asyncio.shield(self.leases.release(lease, None))
        async with self._run_locks.hold(name, self.owner):
            # A process that died since this runtime opened left its row `running`: close it.
            await self._close_abandoned(name)
            return await self._run(self._engine(), name, kind, progress)

    async def sync_leased(
        self, lease: Lease, kind: RunKind | None = None, progress: ProgressCallback | None = None
    ) -> SyncResult:
        """One run of `lease.source` under `lease` (PostgreSQL): every write of the run checks
        the lease's fencing epoch, and the lease is renewed until the run ends. A lease found
        lost ends the run (LeaseLostError from the refused write); the caller releases it."""
        if self.leases is None:
            raise RuntimeError("leases are PostgreSQL's; this runtime holds run locks")
        name = lease.source
        store = self.store
        assert isinstance(store, PostgresStore)
        fenced = store.fenced(name, lease.owner, lease.epoch)
        reason = ABANDONED
        if lease.previous is not None:
            reason = (
                f"its lease (owner {lease.previous}) expired before the run finished, and "
                f"{lease.owner} took the source over; the next run resumes from its last "
                "committed page"
            )
        count = await fenced.fail_abandoned_runs(self.clock.now(), reason, source=name)
        if count:
            log.warning("sync.abandoned_runs", source=name, count=count, owner=lease.previous)
        engine = SyncEngine(fenced, self.clock, owner=self.owner, redactor=self.settings.redactor)
        run = asyncio.create_task(self._run(engine, name, kind, progress), name=f"run-{name}")
        lost: list[str] = []

        def give_up(reason: str) -> None:
            lost.append(reason)
            run.cancel(reason)

        async with kept(self.leases, lease, self.clock, give_up):
            try:
                return await run
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if lost and current is not None and not current.cancelling():
                    raise LeaseLostError(lost[0]) from None  # cancelled by the lost lease
                raise

    async def _run(
        self,
        engine: SyncEngine,
        name: str,
        kind: RunKind | None,
        progress: ProgressCallback | None,
    ) -> SyncResult:
        """One run of `name` by `engine` with the source's own settings (locked or leased)."""
        settings = self.settings.source(name)
        return await engine.run(
            self.sources[name],
            kind,
            progress,
            overlap=settings.incremental_overlap,
            retry_budget=RetryBudget.from_settings(self.settings.http),
            checkpoint_max_age=settings.checkpoint_max_age,
        )

    async def _close_abandoned(self, name: str) -> None:
        """Fail every `running` row of `name`; only while holding its run lock."""
        count = await self.store.fail_abandoned_runs(self.clock.now(), ABANDONED, source=name)
        if count:
            log.warning("sync.abandoned_runs", source=name, count=count)


ABANDONED = (
    "the process running it stopped before it finished (crash or kill); "
    "the next run resumes from its last committed page"
)


def process_owner(started: datetime) -> str:
    """`host:pid:start`, recorded on each run for operators: pids repeat (a restarted container
    numbers its processes the same way), start times do not. Liveness is the run lock, never this."""
    return f"{socket.gethostname()}:{os.getpid()}:{started.strftime('%Y%m%dT%H%M%SZ')}"
