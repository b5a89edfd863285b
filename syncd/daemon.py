"""The daemon: wires store, client pool, token cache, sources and scheduler; owns signals and shutdown."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from types import TracebackType
from typing import Self

from syncd.auth import TokenCache
from syncd.breaker import BreakerPolicy, SourceBreaker
from syncd.clock import Clock, SystemClock
from syncd.config import Settings, SourceSettings
from syncd.errors import SourceBusyError, StoreError, SyncdError
from syncd.feed import WebhookDispatcher
from syncd.http import ClientPool, RetryBudget
from syncd.logging import get_logger
from syncd.ops.health import HealthServer
from syncd.ops.monitor import Monitor
from syncd.ops.notify import Notifier
from syncd.schedule import IntervalSchedule
from syncd.scheduler import SourceScheduler
from syncd.sources import Source, build_source
from syncd.store.base import ChangeFeed, RunKind
from syncd.store.factory import AnyStore, open_store, run_locks, store_name
from syncd.sync import ProgressCallback, SyncEngine, SyncResult

log = get_logger(__name__)


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
        self.sources: dict[str, Source] = {}

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            self._store = await stack.enter_async_context(
                open_store(
                    self.settings.store,
                    redactor=self.settings.redactor,
                    changes=self.settings.changes,
                )
            )
            self._pool = await stack.enter_async_context(
                ClientPool(self.settings.http, self.clock, self._rng)
            )
            # Entered after the store: on the way out it saves any token it could not save before.
            cache = await stack.enter_async_context(
                TokenCache(self._store, self.clock, redactor=self.settings.redactor)
            )
            self._cache = cache
            self.owner = process_owner(self.clock.now())
            for name in await self._store.running_sources():
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
            raise RuntimeError("Runtime is not open; use it inside 'async with Runtime(...)'")
        return self._store

    @property
    def pool(self) -> ClientPool:
        """The open client pool."""
        if self._pool is None:
            raise RuntimeError("Runtime is not open; use it inside 'async with Runtime(...)'")
        return self._pool

    @property
    def cache(self) -> TokenCache:
        """The shared token cache."""
        if self._cache is None:
            raise RuntimeError("Runtime is not open; use it inside 'async with Runtime(...)'")
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
        settings = self.settings.source(name)
        async with self._run_locks.hold(name, self.owner):
            # A process that died since this runtime opened left its row `running`: close it.
            await self._close_abandoned(name)
            return await self._engine().run(
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


class Daemon:
    """Runs every enabled source on its schedule until `stop()` or SIGTERM/SIGINT, then drains."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        handle_signals: bool = True,
        notifier: Notifier | None = None,
    ) -> None:
        self._runtime = runtime
        self._settings = runtime.settings
        self._handle_signals = handle_signals
        self._scheduler = SourceScheduler(clock=runtime.clock)
        self._stopping = asyncio.Event()
        self._active: dict[str, asyncio.Task[SyncResult | None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._signals: list[signal.Signals] = []
        self._stack = AsyncExitStack()
        self.results: list[SyncResult] = []
        self.monitor = Monitor(
            self._settings,
            runtime.store,
            runtime.clock,
            self.results,
            lambda: self._scheduler.running,
            notifier,
            overdue=self._scheduler.overdue,
        )
        self.health: HealthServer | None = None
        self._breakers = {
            s.name: SourceBreaker(BreakerPolicy.from_settings(s)) for s in self._settings.sources
        }
        self._jobs: dict[str, list[str]] = {}
        self._job_tasks: set[asyncio.Task[object]] = set()
        self.webhooks: WebhookDispatcher | None = None

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(self.monitor)
            if self._settings.webhooks:
                self.webhooks = await stack.enter_async_context(
                    WebhookDispatcher(
                        self._settings.webhooks, self._runtime.store, self._runtime.clock
                    )
                )
            if self._settings.health.enabled:
                self.health = await stack.enter_async_context(
                    HealthServer(self._settings.health, self.monitor)
                )
            for source in self._settings.sources:
                if not source.enabled:
                    log.info("daemon.source_disabled", source=source.name)
                    continue
                self._schedule(source)
            self._scheduler.start()
            stack.callback(self._scheduler.shutdown)
            if self._handle_signals:
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(sig, self._on_signal, sig)
                    self._signals.append(sig)
                stack.callback(self._remove_signal_handlers)
            log.info(
                "daemon.started",
                sources=[s.name for s in self._settings.sources if s.enabled],
                store=store_name(self._settings.store),
            )
            # READY only now: the store is open and every job is scheduled.
            await self.monitor.ready()
            self._stack = stack.pop_all()
        return self

    def _schedule(self, source: SourceSettings) -> None:
        name = source.name

        async def job() -> None:
            await self._job(name, None)

        async def full_job() -> None:
            await self._job(name, "full")

        # Interval schedules sync once right away; cron schedules wait for their first slot.
        schedule = source.parsed_schedule
        first = self._runtime.clock.now() if isinstance(schedule, IntervalSchedule) else None
        self._scheduler.add(name, schedule, job, first)
        self._jobs[name] = [name]
        full = source.parsed_full_schedule
        if full is not None:
            self._scheduler.add(f"{name}:full", full, full_job, None)
            self._jobs[name].append(f"{name}:full")
        log.info(
            "daemon.scheduled", source=name, schedule=str(schedule), full_schedule=str(full or "-")
        )

    async def _job(self, name: str, kind: RunKind | None) -> None:
        """The body of a scheduled job; tracked, so that the drain lets it end on its own."""
        task = asyncio.current_task()
        if task is not None:
            self._job_tasks.add(task)
        try:
            await self.trigger(name, kind)
        finally:
            try:
                await self._feed_after_run()
                await self.monitor.after_run()
            finally:
                if task is not None:
                    self._job_tasks.discard(task)

    async def _feed_after_run(self) -> None:
        """Push what the run appended to the feed, and prune what retention no longer keeps."""
        if self.webhooks is not None:
            self.webhooks.wake()
        feed: ChangeFeed = self._runtime.store
        retention = self._settings.changes.retention
        before = self._runtime.clock.now() - timedelta(seconds=retention)
        try:
            removed = await feed.prune_changes(before)
        except StoreError as exc:
            log.error("changes.prune_failed", error=str(exc))
            return
        if removed:
            log.info("changes.pruned", entries=removed, retention_s=retention)

    async def trigger(self, name: str, kind: RunKind | None = None) -> None:
        """Run source `name` now as its scheduled jobs do: skipped while a run of it is going,
        its outcome fed to the source's breaker."""
        if self._stopping.is_set():
            return
        lock = self._locks.setdefault(name, asyncio.Lock())
        if lock.locked():
            # The scheduled and the periodic full job of one source must never overlap.
            log.info("sync.skipped", source=name, reason="already_running", kind=kind or "auto")
            return
        async with lock:
            task = asyncio.create_task(self.run_once(name, kind), name=f"sync-{name}")
            self._active[name] = task
            try:
                result = await asyncio.shield(task)
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise  # this caller was cancelled; the run itself goes on
                # The drain cancelled the run past the grace; the engine recorded it `cancelled`.
                return
            except SourceBusyError as exc:
                log.warning("sync.skipped", source=name, reason="busy", detail=str(exc))
            except SyncdError as exc:
                # A store failure escapes the engine: one clear line, and it counts as a failed run.
                log.error("sync.crashed", source=name, error=str(exc))
                self._after_run(name, ok=False, error=str(exc))
            else:
                if result is not None:
                    self._after_run(name, ok=result.ok, error=result.error)
            finally:
                if task.done():
                    self._active.pop(name, None)

    def _after_run(self, name: str, *, ok: bool, error: str | None) -> None:
        """Feed the source's breaker; back its jobs off while it keeps failing."""
        breaker = self._breakers[name]
        if ok:
            recovered = breaker.succeeded()
            if recovered is not None:
                log.info("source.recovered", source=name, after_failures=recovered.failures)
            return
        backoff = breaker.failed(self._runtime.clock.now())
        if backoff is None or self._stopping.is_set():
            return
        for job_id in self._jobs.get(name, []):
            natural = self._scheduler.next_run(job_id)
            # Only ever later: a backoff shorter than the schedule leaves the schedule alone.
            if natural is not None and natural < backoff.until:
                self._scheduler.reschedule_in(job_id, backoff.until)
        log.warning(
            "source.backoff",
            source=name,
            failures=backoff.failures,
            delay_s=backoff.delay,
            next_run=(self.next_run(name) or backoff.until).isoformat(),
            error=error,
        )

    def next_run(self, job: str) -> datetime | None:
        """When a job runs next: a source's name, or `<source>:full` (None if not scheduled)."""
        return self._scheduler.next_run(job)

    async def run_once(self, name: str, kind: RunKind | None = None) -> SyncResult | None:
        """Sync source `name` now, unless it waits for an operator (`needs_reauth`)."""
        state = await self._runtime.store.source_state(name)
        if state.needs_reauth:
            log.warning(
                "sync.skipped",
                source=name,
                reason="needs_reauth",
                detail=state.reauth_reason,
                action=f"run 'syncd auth {name}'",
            )
            return None
        result = await self._runtime.sync(name, kind)
        self.results.append(result)
        return result

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("daemon.signal", signal=sig.name)
        self.stop()

    def stop(self) -> None:
        """Ask the daemon to stop scheduling and drain."""
        self._stopping.set()

    async def wait(self) -> None:
        """Block until `stop()` or a signal."""
        await self._stopping.wait()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()
        self.monitor.stopping(sum(not t.done() for t in self._active.values()))
        self._remove_signal_handlers()
        # Stop firing jobs but leave the running ones alone: shutting APScheduler down now would
        # cancel them, skip their bookkeeping and log each one as a job error with a traceback.
        self._scheduler.pause()
        running = [t for t in self._active.values() if not t.done()]
        grace = self._settings.shutdown_grace
        pending: set[asyncio.Task[SyncResult | None]] = set()
        if running:
            log.info("daemon.draining", runs=len(running), grace_s=grace)
            _, pending = await asyncio.wait(running, timeout=grace)
            for task in pending:
                task.cancel("the daemon was stopped during the run")
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        # Their runs are over: the jobs only feed the breaker and the monitor before returning.
        if self._job_tasks:
            await asyncio.wait(set(self._job_tasks))
        self._scheduler.shutdown()
        log.info(
            "daemon.stopped",
            runs=len(self.results),
            failed=sum(not r.ok for r in self.results),
            cancelled=len(pending),
        )
        # The listener and the watchdog outlive the drain: systemd must not kill a slow drain.
        await self._stack.aclose()

    def _remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        while self._signals:
            loop.remove_signal_handler(self._signals.pop())
